"""Reads the whole ``risk.audit`` topic (for ``mevrisk audit verify`` and restoring the chain head)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import AUDIT

log = logging.getLogger(__name__)


def _record(message: Any) -> dict[str, Any] | None:
    """One audit record, or None (logged) when the bytes are not a JSON object: a writer of the
    topic must not be able to stop every worker's start with one bad record."""
    try:
        value = orjson.loads(message.value) if message.value is not None else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        log.warning("skipped malformed record %s[%d]@%d on the audit topic",
                    message.topic, message.partition, message.offset)
        return None
    return value


async def read_audit_topic(bootstrap: str, topic: str = AUDIT) -> list[dict[str, Any]]:
    """Every record of the audit topic in offset order (it has one partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or {0})
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        remaining = [tp for tp in tps if end[tp] > 0]
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for messages in batch.values():
                records.extend(r for r in map(_record, messages) if r is not None)
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
        return records
    finally:
        await consumer.stop()

"""Reads ``risk.audit``: whole (``mevrisk audit verify``), or its tail since a time (recovery after a
restored state checkpoint)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import TopicPartition

from streams import kafka_clients, metrics
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
        metrics.UNTRUSTED_RECORDS.labels("risk.audit", "malformed").inc()
        return None
    return value


async def read_audit_topic(bootstrap: str, topic: str = AUDIT) -> list[dict[str, Any]]:
    """Every record of the audit topic in offset order (it has one partition)."""
    return [record for _, record in await read_audit_entries(bootstrap, topic)]


async def read_audit_entries(bootstrap: str, topic: str = AUDIT, since_ms: int | None = None
                             ) -> list[tuple[int, dict[str, Any]]]:
    """``(offset, record)`` of the audit topic in offset order: every one, or with ``since_ms`` only
    those appended at or after that broker time (wall-clock ms; the topic uses LogAppendTime)."""
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or {0})
        tps = [TopicPartition(topic, p) for p in partitions]
        end = await consumer.end_offsets(tps)
        start = await consumer.beginning_offsets(tps)
        if since_ms is not None:  # asked before anything is assigned (else each waits behind a fetch)
            found = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in tps})
            start = {tp: end[tp] if found[tp] is None else found[tp].offset for tp in tps}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        entries: list[tuple[int, dict[str, Any]]] = []
        remaining = [tp for tp in tps if end[tp] > start[tp]]
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for messages in batch.values():
                entries.extend((m.offset, r) for m in messages if (r := _record(m)) is not None)
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
        return entries
    finally:
        await consumer.stop()

"""Reads the whole ``risk.audit`` topic (for ``mevrisk audit verify`` and restoring the chain head)."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import AUDIT


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
                records.extend(orjson.loads(m.value) for m in messages)
            remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
        return records
    finally:
        await consumer.stop()

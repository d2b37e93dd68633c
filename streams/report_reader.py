"""Reads one UTC day's records for ``mevrisk report daily`` from the topics: a bounded read (up to
the end offsets found at the start) of ``risk.snapshots``, ``risk.alerts``, ``risk.controls``,
``risk.dlq`` and ``mev.strategy.stats`` from the broker time the day's first events can have
been appended at, the whole of ``risk.audit`` (its chains are verified from their start) and the
day's records of ``risk.reports``.

Every record is untrusted bytes: one that is not a JSON object is skipped and counted, never a
crash. Topics use LogAppendTime, so an event of the day was appended no earlier than the day's
start less ``MEVRISK_MAX_FUTURE_SKEW_MS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.reports.day import day_bounds
from streams import kafka_clients
from streams.audit_reader import read_audit_topic
from streams.topics import ALERTS, CONTROLS, DLQ, REPORTS, SNAPSHOTS, STRATEGY_STATS

log = logging.getLogger(__name__)


@dataclass
class DayRecords:
    """The day's records by kind (``agents.reports.model``), the archived reports, what was skipped."""

    records: dict[str, list[dict[str, Any]]]
    archived: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0


def _event_ts(value: dict[str, Any], kind: str) -> Any:
    return value.get("received_ts_ms" if kind == "dlq" else "ts_ms")


async def _read_topic(consumer: AIOKafkaConsumer, topic: str, since_broker_ms: int | None,
                      keep: Callable[[dict[str, Any]], bool], out: DayRecords) -> list[dict[str, Any]]:
    """The records of ``topic`` from ``since_broker_ms`` (None: its start) to its end offsets now."""
    metadata = await consumer._client.fetch_all_metadata()  # no public listing call (streams.recovery)
    tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]
    if not tps:
        return []
    end = await consumer.end_offsets(tps)
    start = await consumer.beginning_offsets(tps)
    if since_broker_ms is not None:
        found = await consumer.offsets_for_times({tp: max(0, since_broker_ms) for tp in tps})
        start = {tp: end[tp] if found[tp] is None else found[tp].offset for tp in tps}
    kept: list[dict[str, Any]] = []
    remaining = [tp for tp in tps if end[tp] > start[tp]]
    if not remaining:  # nothing to read: no assignment, so no fetch left in flight at ``stop``
        return kept
    consumer.assign(remaining)
    for tp in remaining:
        consumer.seek(tp, start[tp])
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, messages in batch.items():
            for m in messages:
                if m.offset >= end[tp]:
                    continue
                try:
                    value = orjson.loads(m.value) if m.value is not None else None
                except orjson.JSONDecodeError:
                    value = None
                if not isinstance(value, dict):
                    out.malformed += 1
                    log.warning("skipped malformed record %s[%d]@%d", m.topic, m.partition, m.offset)
                elif keep(value):
                    kept.append(value)
        remaining = [tp for tp in remaining if await consumer.position(tp) < end[tp]]
    return kept


async def stop_consumer(consumer: AIOKafkaConsumer, nudge_secs: float = 2.0) -> None:
    """``consumer.stop()``, cancelling its fetch task again every ``nudge_secs`` until it ends.

    Seen on a loaded broker (aiokafka 0.14): ``stop`` cancels the fetch task once, the task swallows
    that cancellation while a fetch is in flight and then waits on that fetch for good, so ``stop``
    never returned (``mevrisk report daily`` and the report route hung); a further cancel ends it."""
    stopping = asyncio.ensure_future(consumer.stop())
    while not (await asyncio.wait({stopping}, timeout=nudge_secs))[0]:
        fetch_task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)  # no public hook
        if fetch_task is not None and not fetch_task.done():
            log.warning("report reader: the consumer's stop is stuck on a fetch; cancelling it again")
            fetch_task.cancel()
    stopping.result()


async def read_day(bootstrap: str, date: str, skew_ms: int = 300_000) -> DayRecords:
    """Every record of ``date`` (UTC) the report needs, read once from the broker at ``bootstrap``."""
    start_ms, end_ms = day_bounds(date)
    out = DayRecords(records={})

    def in_day(kind: str) -> Callable[[dict[str, Any]], bool]:
        def keep(value: dict[str, Any]) -> bool:
            ts = _event_ts(value, kind)
            return isinstance(ts, int) and not isinstance(ts, bool) and start_ms <= ts < end_ms
        return keep

    async def read(topic: str, since_ms: int | None, keep: Callable[[dict[str, Any]], bool]
                   ) -> list[dict[str, Any]]:
        consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            return await _read_topic(consumer, topic, since_ms, keep, out)
        finally:
            await stop_consumer(consumer)

    for kind, topic in (("snapshots", SNAPSHOTS), ("alerts", ALERTS), ("controls", CONTROLS),
                        ("dlq", DLQ), ("strategy_stats", STRATEGY_STATS)):
        out.records[kind] = await read(topic, start_ms - skew_ms, in_day(kind))
    out.archived = await read(REPORTS, None, lambda v: v.get("date") == date)
    out.records["audit"] = await read_audit_topic(bootstrap)
    return out

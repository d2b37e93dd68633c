"""Crash recovery by deterministic replay: rebuild the pipeline from the input topics and
publish only what was not published before.

The pipeline is a pure function of its inputs in event-time order, so after a restart
the worker re-reads the partitioned inputs from their beginning up to the consumer
group's committed offsets (``bootstrap_inputs``), while the replicated market feed
re-reads the ticks. The outputs this regenerates carry the same deterministic ids as
before; ``OutputHeads`` (read from the tails of the output topics) tells which of them
were already published, so a restart loses no alert and publishes none twice.
Exactness needs the inputs since the first event to be retained; the ticks window is
``MEVRISK_MARKET_REPLAY_MESSAGES`` per partition. The online models are the exception:
they are restored from their checkpoints on ``risk.models`` before the replay
(``streams.model_store``), and the replay only teaches them the events after each
checkpoint's ``as_of_ms`` (``agents.anomaly.checkpoint``), so for them the window need
only reach back to the last checkpoint. With state checkpoints on (``streams.state_store``),
recovery starts from the restored checkpoint: ``bootstrap_inputs`` reads only the owned partitions
from its offsets, and ``schedule_operator_actions`` skips the actions it already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.audit.trust import AuditGate
from schemas.contracts import ContractError, broker_time_ms, validate_bytes
from streams import kafka_clients, metrics
from streams.dlq import Rejected, record_key
from streams.settings import get_settings
from streams.topics import ALERTS, AUDIT, CONTROLS, POSITIONS, SNAPSHOTS, STRATEGY_STATS, contract_topic

log = logging.getLogger(__name__)

TAIL_RECORDS = 20_000
"""Records read back from the end of each output partition."""


@dataclass
class OutputHeads:
    """The newest published output per topic and entity (portfolio, fingerprint, scope):
    records older than their entity's head are published; at the head's own event time, the
    ids seen decide. Per entity, not per topic, because several workers publish to one topic:
    a worker taking over a dead worker's portfolios must publish what the dead one had not,
    although its own outputs on the same topic are newer."""

    max_ts: dict[tuple[str, str], int] = field(default_factory=dict)
    ids_at_max: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    audit_seq: dict[str, int] = field(default_factory=dict)
    audit_last: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The newest audit record per chain, to continue a chain the pipeline does not replay."""
    malformed: int = 0
    """Records on the output topics that were not valid outputs (skipped)."""
    gate: AuditGate = field(default_factory=lambda: AuditGate(None))
    """Which audit records count (``agents.audit.trust``): with the worker's audit key only those
    whose ``mac`` verifies, so a record appended by anyone else (``seq: 1e12``) cannot make every
    later record of its chain look published; without a key only those that link to their chain."""

    def add(self, topic: str, value: dict[str, Any]) -> None:
        if topic == "risk.audit":
            if not self.gate.accept(value):
                return
            stream = str(value["stream"])
            if int(value["seq"]) > self.audit_seq.get(stream, -1):
                self.audit_seq[stream] = int(value["seq"])
                self.audit_last[stream] = value
            return
        ts = int(value.get("ts_ms", 0))
        entity = (topic, output_entity(topic, value))
        head = self.max_ts.get(entity)
        if head is None or ts > head:
            self.max_ts[entity] = ts
            self.ids_at_max[entity] = {output_id(topic, value)}
        elif ts == head:
            self.ids_at_max[entity].add(output_id(topic, value))

    def already_published(self, topic: str, value: dict[str, Any]) -> bool:
        if topic == "risk.audit":
            return int(value["seq"]) <= self.audit_seq.get(str(value["stream"]), -1)
        entity = (topic, output_entity(topic, value))
        head = self.max_ts.get(entity)
        if head is None:
            return False
        ts = int(value.get("ts_ms", 0))
        return ts < head or (ts == head and output_id(topic, value) in self.ids_at_max[entity])

    @property
    def empty(self) -> bool:
        return not self.max_ts and not self.audit_seq

    def newest(self) -> dict[str, int]:
        """The newest event time published per topic (for logs)."""
        out: dict[str, int] = {}
        for (topic, _), ts in self.max_ts.items():
            out[topic] = max(ts, out.get(topic, ts))
        return out


def output_entity(topic: str, value: dict[str, Any]) -> str:
    """What an output is about, the unit its event times are ordered in (also its record key)."""
    if topic == "risk.alerts":
        return str(value["fingerprint"])
    if topic == "risk.controls":
        return str(value["scope"])
    return str(value.get("portfolio"))


def output_id(topic: str, value: dict[str, Any]) -> str:
    if topic == "risk.alerts":
        return str(value["event_id"])
    if topic == "risk.controls":
        return str(value["control_id"])
    return f"{value.get('portfolio')}@{value.get('ts_ms')}"


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    metadata = await consumer._client.fetch_all_metadata()  # no public listing call
    return [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]


async def _read_ranges(
    consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]],
    on_message: Callable[[Any], Awaitable[None] | None],
) -> None:
    wanted = {tp: (start, end) for tp, (start, end) in ranges.items() if end > start}
    if not wanted:
        return
    consumer.assign(list(wanted))
    for tp, (start, _) in wanted.items():
        consumer.seek(tp, start)
    remaining = set(wanted)
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, messages in batch.items():
            for message in messages:
                if message.offset < wanted[tp][1]:
                    result = on_message(message)
                    if result is not None:
                        await result
            if await consumer.position(tp) >= wanted[tp][1]:
                remaining.discard(tp)


async def read_partition(bootstrap: str, topic: str, partition: int, first: int, end: int) -> list[Any]:
    """The records ``[first, end)`` of ``topic[partition]`` (Kafka topic name), read outside the
    consumer group (``streams.continuity``: a hole Faust's stream left)."""
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    tp = TopicPartition(topic, partition)
    try:
        begin = (await consumer.beginning_offsets([tp]))[tp]
        if begin > first:
            log.warning("%s: records %d to %d are gone (retention kept from %d)", tp, first,
                        min(begin, end) - 1, begin)
        await asyncio.wait_for(_read_ranges(consumer, {tp: (max(first, begin), end)}, records.append),
                               timeout=READ_PARTITION_TIMEOUT_S)
    except TimeoutError:
        log.error("%s: reading records %d to %d timed out after %.0f s: going on without those not read",
                  tp, first, end - 1, READ_PARTITION_TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return records


READ_PARTITION_TIMEOUT_S = 30.0


def _add_head(heads: OutputHeads, topic: str, message: Any) -> None:
    """Count one output record towards the heads; a malformed one (anyone who can write the topic
    can put one there) is skipped and counted, never a crash at start."""
    try:
        value = orjson.loads(message.value) if message.value is not None else None
        if not isinstance(value, dict):
            raise TypeError(f"not a JSON object: {type(value).__name__}")
        heads.add(topic, value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        heads.malformed += 1
        metrics.UNTRUSTED_RECORDS.labels(topic, "malformed").inc()
        log.warning("skipped malformed record %s[%d]@%d while reading output heads: %s",
                    message.topic, message.partition, message.offset, str(exc)[:200])


async def read_output_heads(bootstrap: str, audit_key: bytes | None = None) -> OutputHeads:
    """Scan the tails of the output topics; audit records count only when ``audit_key`` verifies
    their tag (None: when they link to their chain). Skipped records are logged and counted
    (``mevrisk_untrusted_records_total``)."""
    heads = OutputHeads(gate=AuditGate(audit_key))
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        # every offset is asked before anything is assigned, and all tails are read in one pass:
        # with partitions assigned, each offsets request waits behind a fetch (~0.5-1 s each)
        tps = [tp for topic in (SNAPSHOTS, ALERTS, CONTROLS, AUDIT)
               for tp in await _partitions(consumer, topic)]
        if tps:
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            ranges = {tp: (max(begin[tp], end[tp] - TAIL_RECORDS), end[tp]) for tp in tps}
            await _read_ranges(consumer, ranges, lambda m: _add_head(heads, contract_topic(m.topic), m))
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    for reason, count in heads.gate.refused.items():
        metrics.UNTRUSTED_RECORDS.labels("risk.audit", reason).inc(count)
    if heads.malformed or heads.gate.refused:
        log.warning("output heads: skipped %d malformed output records and %s audit records",
                    heads.malformed, dict(heads.gate.refused))
    return heads


async def schedule_operator_actions(bootstrap: str, pipeline: Any, *, restored: bool = False,
                                    since_ms: int | None = None, audit_key: bytes | None = None) -> int:
    """Queue the operator actions recorded on ``risk.audit`` so the replay re-applies them.

    Only records whose ``mac`` verifies with ``audit_key`` (the worker secret's audit key) are
    acted on: anyone who can produce to the topic could otherwise acknowledge, resolve, silence,
    halt or reload rules. Without a key none is (the worker warns at start); refused records are
    logged and counted (``mevrisk_untrusted_records_total{topic="risk.audit"}``).

    ``restored``: the pipeline holds a restored state checkpoint; an action whose audit record is
    below its chain's restored head is already in that state, and one already queued in it (restored
    with the buffered events) is not queued twice. ``since_ms``: read only the records appended
    since this broker time (those before are in the restored state), so the read does not grow
    with the topic's history."""
    from agents.pipeline import OPERATOR, is_pipeline_chain, operator_actions
    from streams.audit_reader import read_audit_entries

    read = await read_audit_entries(bootstrap, since_ms=since_ms)
    gate = AuditGate(audit_key, link_unsigned=False)
    entries = [(offset, record) for offset, record in read
               if not is_pipeline_chain(str(record.get("stream"))) or gate.accept(record)]
    for reason, count in gate.refused.items():
        metrics.UNTRUSTED_RECORDS.labels("risk.audit", reason).inc(count)
    if gate.refused:
        log.warning("operator actions: %s records of the pipeline's audit chains not acted on%s",
                    dict(gate.refused), "" if audit_key else " (MEVRISK_CHECKPOINT_SECRET is not set: "
                    "no record of risk.audit can be authenticated)")
    by_offset = dict(entries)
    actions = operator_actions([r for _, r in entries], orders=[o for o, _ in entries])
    if restored:
        def bare(action: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in action.items() if k != "audit_order"}

        queued = [bare(value) for _, _, _, topic, value in pipeline._heap if topic == OPERATOR]

        def covered(action: dict[str, Any]) -> bool:
            record = by_offset[action["audit_order"]]
            chain = pipeline.audits.get(str(record.get("stream")))
            seq = record.get("seq")
            if chain is not None and isinstance(seq, int) and seq < chain.next_seq:
                return True
            return bare(action) in queued

        actions = [a for a in actions if not covered(a)]
    for action in actions:
        pipeline.schedule_operator(action)
    return len(actions)


async def committed_offsets(bootstrap: str, group_id: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, read with the admin API (a consumer of the group would
    wait for the rebalance that a killed member leaves behind)."""
    admin = kafka_clients.admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset is not None and meta.offset >= 0}


async def bootstrap_inputs(
    bootstrap: str, group_id: str, offer: Callable[..., Awaitable[None]],
    start: Mapping[tuple[str, int], int] | None = None, partitions: Collection[int] | None = None,
    skip: frozenset[tuple[str, int, int]] = frozenset(),
    reached: dict[tuple[str, int], int] | None = None,
    reject: Callable[..., Awaitable[None]] | None = None,
) -> int:
    """Offer every valid position and strategy-stats record below the group's committed offsets,
    as ``offer(topic, value, partition, offset)``.

    ``start``: per contract ``(topic, partition)``, the first offset to read (a restored state
    checkpoint covers the records before it); a partition not named starts at its beginning.
    ``partitions``: read only these input partitions (None: every one).
    ``skip``: quarantined records ``(topic, partition, offset)``, never offered.
    ``reached``: filled with the end of each range read, per contract ``(topic, partition)``: the
    next offset the live agents must deliver (records skipped here are before it).
    ``reject``: called as ``reject(topic, Rejected, partition, offset)`` for each record that breaks
    its contract (the input agents sent it to risk.dlq when it first arrived; the pipeline's DLQ
    rate counts it again, as an uninterrupted run did)."""
    committed = await committed_offsets(bootstrap, group_id)
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    count = 0

    async def on_message(message: Any) -> None:
        nonlocal count
        topic = contract_topic(message.topic)
        if (topic, message.partition, message.offset) in skip:
            return
        try:
            value = validate_bytes(topic, message.value, key=message.key,
                                   now_ms=broker_time_ms(message.timestamp),
                                   max_future_skew_ms=get_settings().max_future_skew_ms)
        except ContractError as error:  # the input agents sent it to risk.dlq when it first arrived
            if reject is not None:
                await reject(topic, Rejected(error.reason, record_key(message.key)), message.partition,
                             message.offset)
            return
        count += 1
        await offer(topic, value, message.partition, message.offset)

    try:
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        for topic in (POSITIONS, STRATEGY_STATS):
            tps = await _partitions(consumer, topic)
            if not tps:
                continue
            begin = await consumer.beginning_offsets(tps)
            for tp in tps:
                if partitions is not None and tp.partition not in partitions:
                    continue
                first = begin[tp]
                if start is not None and (contract_topic(topic), tp.partition) in start:
                    first = max(first, start[(contract_topic(topic), tp.partition)])
                    if start[(contract_topic(topic), tp.partition)] < begin[tp]:
                        log.warning("%s: the state checkpoint resumes at %d, retention kept from %d: "
                                    "the records between are lost", tp, start[(contract_topic(topic),
                                                                              tp.partition)], begin[tp])
                if committed.get(tp):
                    ranges[tp] = (first, committed[tp])
        await _read_ranges(consumer, ranges, on_message)
        if reached is not None:
            reached.update({(contract_topic(tp.topic), tp.partition): end
                            for tp, (first, end) in ranges.items() if end > first})
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return count

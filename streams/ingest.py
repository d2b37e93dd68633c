"""Input agents of the partitioned inputs (positions, strategy stats): validate every message, DLQ
the bad ones, hand good ones to the worker's pipeline.

The first stage of the data path (``streams`` package docstring): the good events go to
``streams.host.host``; the bad ones to ``risk.dlq`` (``streams.dlq``). Ticks have no agent: every
worker reads all of them through the replicated market feed (``streams.host``), which validates
each once and dead-letters the bad ones of the partitions its worker owns.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas.contracts import broker_time_ms
from streams import metrics
from streams.app import app
from streams.continuity import commit_holes, hole_before
from streams.dlq import Rejected, quarantine, screen, screen_record
from streams.host import host
from streams.metrics import INPUT_HOLES
from streams.recovery import read_partition
from streams.settings import get_settings
from streams.supervision import supervised
from streams.topics import contract_topic, positions_topic, strategy_stats_topic

log = logging.getLogger(__name__)

HOLE_AFTER, HOLE_RECORDS = 100, 25
"""Test-only hole (``MEVRISK_FAULT_INJECT=hole:<agent>``): from the first record at or past offset
``HOLE_AFTER`` of a partition, ``HOLE_RECORDS`` records are dropped unacknowledged, once (what Faust
can do around a rebalance)."""


async def _consume(stream: Any, *, name: str) -> None:
    await host.ready.wait()  # recovery first replays what was consumed and loads the quarantine
    inject = get_settings().fault_inject == name
    hole_after = HOLE_AFTER if get_settings().fault_inject == f"hole:{name}" else -1
    hole_end = -1
    async for event in stream.events():
        message = event.message
        topic = contract_topic(message.topic)
        if hole_after >= 0 and message.offset >= hole_after:  # test-only (MEVRISK_FAULT_INJECT)
            if hole_end < 0:
                hole_end = message.offset + HOLE_RECORDS
                log.warning("fault injection: %s[%d] drops records %d to %d unacknowledged",
                            message.topic, message.partition, message.offset, hole_end - 1)
            if message.offset < hole_end:
                message.acked = True  # never counted by Faust's commit bookkeeping, as if never delivered
                continue
            hole_after = -1
        await _fill_hole(message, topic)
        if (topic, message.partition, message.offset) in host.quarantined:
            log.warning("skipping %s[%d]@%d: it failed %s before (quarantined on risk.dlq)",
                        message.topic, message.partition, message.offset, name)
            host.handled(topic, message.partition, message.offset)
            continue
        try:
            if inject:  # test-only (MEVRISK_FAULT_INJECT): a real agent crash, outside the isolation
                raise RuntimeError("injected fault")
            started = time.perf_counter()
            await _hand_over(topic, message.partition, message.offset, await screen(event))
            metrics.PROCESSING_SECONDS.labels(topic).observe(time.perf_counter() - started)
        except Exception as error:  # a bug past the pipeline's isolation: quarantine, then crash
            await quarantine(event, name, error)
            raise


async def _fill_hole(message: Any, topic: str) -> None:
    """Before a live partitioned input record: if records before it never reached this agent
    (``streams.continuity``), read them from the broker and handle them first, in order."""
    expected = await host.expected_offset(topic, message.partition)
    hole = hole_before(message.offset, expected)
    if hole is None:
        return
    first, end = hole
    log.warning("%s[%d]: record %d arrived where %d was expected next: reading the %d records "
                "between from the broker", message.topic, message.partition, end, first, end - first)
    INPUT_HOLES.labels(topic, "filled").inc()
    records = await read_partition(get_settings().kafka_bootstrap_servers, message.topic,
                                   message.partition, first, end)
    for record in records:
        if (topic, record.partition, record.offset) in host.quarantined:
            host.handled(topic, record.partition, record.offset)
            continue
        clean = await screen_record(record.topic, record.partition, record.offset, record.key,
                                    record.value, broker_time_ms(record.timestamp))
        await _hand_over(topic, record.partition, record.offset, clean)
    await _declare_done(message.tp, first, end)


async def _hand_over(topic: str, partition: int, offset: int, clean: dict[str, Any] | Rejected) -> None:
    """A validated record goes to the pipeline; a rejected one (already on risk.dlq) is counted in
    its DLQ rate and moves the next offset expected past it."""
    if isinstance(clean, Rejected):
        await host.reject(topic, clean, partition, offset=offset)
        host.handled(topic, partition, offset)
    else:
        await host.offer(topic, clean, partition, offset=offset)


async def _declare_done(tp: Any, first: int, end: int) -> None:
    """Tell Faust that offsets ``[first, end)`` of ``tp`` will not be delivered (they were handled
    another way), so its commits go past them (``Consumer._add_gap``, inclusive bounds)."""
    add_gap = getattr(app.consumer, "_add_gap", None)
    if add_gap is not None and end > first:
        await add_gap(tp, first, end - 1)


@app.timer(interval=5.0)
async def declare_commit_holes() -> None:
    """Faust commits a partition only up to its first unacknowledged offset; a record it dropped
    around a rebalance stops that for good. A hole seen twice in a row (5 s apart) whose records
    the pipeline already holds is declared done (``streams.continuity.commit_holes``)."""
    consumer: Any = app.consumer  # its private bookkeeping below is not part of faust's ConsumerT
    try:  # Faust's consumer bookkeeping (faust.transport.consumer.Consumer)
        committed = dict(consumer._committed_offset)
        acked = {tp: list(offsets) for tp, offsets in consumer._acked.items() if offsets}
        in_flight = [(m.tp, m.offset) for m in list(consumer._unacked_messages)]
    except AttributeError:
        return
    covered = {tp: host.next_offsets.get((contract_topic(tp.topic), tp.partition), -1) for tp in acked}
    holes = commit_holes(committed, acked, in_flight, covered)
    for tp, (first, end) in holes.items():
        if _suspected_holes.get(tp) == (first, end):
            log.warning("%s[%d]: commits stuck at %d behind records the pipeline holds (acknowledged "
                        "from %d): declaring them done", tp.topic, tp.partition, first, end)
            INPUT_HOLES.labels(contract_topic(tp.topic), "declared").inc()
            await _declare_done(tp, first, end)
    _suspected_holes.clear()
    _suspected_holes.update(holes)


_suspected_holes: dict[Any, tuple[int, int]] = {}


@app.agent(positions_topic)
@supervised("apply_positions")
async def apply_positions(stream: Any) -> None:
    """Positions, partitioned by portfolio: validated, then applied to this worker's books."""
    await _consume(stream, name="apply_positions")


@app.agent(strategy_stats_topic)
@supervised("apply_strategy_stats")
async def apply_strategy_stats(stream: Any) -> None:
    """Strategy interval statistics, partitioned by strategy."""
    await _consume(stream, name="apply_strategy_stats")

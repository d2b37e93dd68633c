"""The clock stops once before each multiple of ``checkpoint_ms`` (aligned state checkpoints): the
outputs are the same as without the stops, and every stop is at the same instant on every worker."""

from __future__ import annotations

from typing import Any

import pytest

from agents.assembly import build_pipeline
from agents.pipeline import RiskPipeline
from tests.unit.pipeline.test_pipeline import OPTIONS, _events, _partitioned


@pytest.fixture(scope="module")
def events() -> list[tuple[str, dict]]:
    return _events()


def _run_stopping(pipeline: RiskPipeline, events: Any, partitions: bool = False
                  ) -> tuple[list[Any], list[int]]:
    outputs: list[Any] = []
    stops: list[int] = []
    feed = _partitioned(events) if partitions else ((t, v, 0) for t, v in events)
    for topic, value, partition in feed:
        outputs.extend(pipeline.offer(topic, value, partition))
        while pipeline.checkpoint_due is not None:
            stops.append(pipeline.checkpoint_due)
            assert pipeline.watermark_ms == pipeline.checkpoint_due
            outputs.extend(pipeline.resume())
    outputs.extend(pipeline.drain())
    return outputs, stops


def test_stops_do_not_change_the_outputs(events: Any) -> None:
    plain = build_pipeline(OPTIONS)
    expected = [o for topic, value in events for o in plain.offer(topic, value)] + plain.drain()
    stopping = build_pipeline(OPTIONS)
    stopping.checkpoint_ms = 10_000
    got, stops = _run_stopping(stopping, events)
    assert got == expected
    assert stops, "the run crossed several checkpoint times"
    assert all((s + 1) % 10_000 == 0 for s in stops)
    assert stops == sorted(set(stops)), "once per multiple"


def test_two_workers_stop_at_the_same_instants(events: Any) -> None:
    """Each worker owns one partition; both stop at the same multiples less 1 ms."""
    stops = []
    for owned in (frozenset({0}), frozenset({1})):
        pipeline = build_pipeline(OPTIONS)
        pipeline.checkpoint_ms = 10_000
        pipeline.owned_partitions = owned
        stops.append(_run_stopping(pipeline, events, partitions=True)[1])
    assert stops[0] and stops[0] == stops[1]


def test_a_first_release_that_jumps_still_stops_at_the_first_instant(events: Any) -> None:
    """A worker whose partitions stay empty holds its clock until they fall idle, then releases
    everything it buffered in one call: its clock still stops at the first instant after the first
    event, as a peer's does (a takeover combines the two workers' checkpoints of one instant); the
    rest of the jump is released at once (a day without input must not stop at every instant)."""
    steady = build_pipeline(OPTIONS)
    steady.checkpoint_ms = 10_000
    expected_stops = _run_stopping(steady, events)[1]
    jumping = build_pipeline(OPTIONS)
    jumping.checkpoint_ms = 10_000
    jumping.expect("mev.positions", 7, 0.0)  # an empty partition: holds the clock while it is active
    for topic, value in events:
        assert jumping.offer(topic, value, 0, 1.0) == []
    assert jumping.watermark_ms == 0 and jumping.buffered == len(events)
    outputs = jumping.poll(1.0 + jumping.idle_source_secs)  # partition 7 falls idle: one jump
    stops = []
    while jumping.checkpoint_due is not None:
        stops.append(jumping.checkpoint_due)
        outputs.extend(jumping.resume())
    first_ts = min(int(value["ts_ms"]) for _, value in events)
    after_first = [s for s in expected_stops if s >= first_ts]  # the steady clock started earlier
    assert outputs and stops == after_first[:1]  # then the rest of the jump at once


def test_a_day_without_input_stops_once(events: Any) -> None:
    """The idle heartbeat moves the clock over a day without input (the daily report's test): one
    stop, then the rest of the day at once, its empty bars skipped; stopping at each of the 1,440
    instants closed every bar of the day one by one and the worker hung."""
    pipeline = build_pipeline(OPTIONS)
    pipeline.checkpoint_ms = 60_000
    _run_stopping(pipeline, events)
    target = pipeline.watermark_ms + 86_400_000
    pipeline.heartbeat(target)
    stops = 0
    while pipeline.checkpoint_due is not None:
        stops += 1
        pipeline.resume()
    assert stops == 1 and pipeline.watermark_ms == target
    assert pipeline.stats.skipped_bars > 80_000

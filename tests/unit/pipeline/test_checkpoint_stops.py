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

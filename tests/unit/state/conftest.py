"""A seeded recording with incidents on both partitions, and the uninterrupted reference run."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import pytest

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import Output, RiskPipeline
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)  # models on (the default)
SECRET = b"unit-test-checkpoint-secret-0123"
INCIDENTS = ("flash-crash@30s/10s", "gas-spike@45s/15s", "revert-storm@55s/20s",
             "concentration-build-up@70s/25s", "feed-stall@95s/12s")
PORTFOLIO_PARTITION = {"alpha": 0, "beta": 1}

Event = tuple[str, dict[str, Any], int]


def partition_of(topic: str, value: dict[str, Any]) -> int:
    """Where the worker would read the event: positions by portfolio, stats by strategy, ticks by key."""
    if topic == "mev.positions":
        return PORTFOLIO_PARTITION[value["portfolio"]]
    key = value.get("strategy") or value.get("asset") or value.get("chain") or ""
    return zlib.crc32(str(key).encode()) % 2


def record(duration_s: float = 120) -> list[Event]:
    sim = Simulator(3, START_MS, 150, duration_s, [Incident.parse(s) for s in INCIDENTS])
    return [(ev.topic, ev.value, partition_of(ev.topic, ev.value))
            for ev in sim if isinstance(ev.value, dict)]


def feed(pipeline: RiskPipeline, events: Iterable[Event]) -> list[Output]:
    out: list[Output] = []
    for topic, value, partition in events:
        out.extend(pipeline.offer(topic, value, partition))
    return out


@pytest.fixture(scope="package")
def events() -> list[Event]:
    return record()


@pytest.fixture(scope="package")
def reference(events: list[Event]) -> list[Output]:
    """The uninterrupted run over the whole recording."""
    pipeline = build_pipeline(OPTIONS)
    out = feed(pipeline, events) + pipeline.drain()
    assert pipeline.stats.late == 0
    return out

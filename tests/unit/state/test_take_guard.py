"""The host's state checkpoint take never stops the worker: a take that fails (an oversized blob)
or one reached mid catch-up (too many buffered events) is skipped and counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agents.state
from agents.assembly import PipelineOptions, build_pipeline
from agents.state.errors import CheckpointError
from streams import host as host_module
from streams.state_store import CHECKPOINTS


def _ready_host(pipeline: Any) -> host_module.PipelineHost:
    host = host_module.PipelineHost()
    host.pipeline = pipeline
    host.state_ms, host.state_secret = 1000, b"take-guard-secret"
    host.assignment = frozenset({0})
    host.market_positioned = host.generation
    host.ready.set()
    pipeline.checkpoint_due = 999
    return host


def _skipped() -> float:
    return CHECKPOINTS.labels("skipped")._value.get()


def test_a_take_that_fails_is_skipped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def oversized(*_: Any, **__: Any) -> dict[str, bytes]:
        raise CheckpointError("oversized", "body of 73829515 bytes exceeds 67108864", "market")

    monkeypatch.setattr(agents.state, "take", oversized)
    host = _ready_host(build_pipeline(PipelineOptions(bar_ms=1000)))
    before = _skipped()
    assert asyncio.run(host._take(host.pipeline)) is None
    assert _skipped() == before + 1


def test_a_take_with_too_many_buffered_events_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[int] = []
    monkeypatch.setattr(agents.state, "take", lambda *a, **k: taken.append(1) or {})
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000))
    too_many = host_module.STATE_TAKE_MAX_BUFFERED + 1
    monkeypatch.setattr(type(pipeline), "buffered", property(lambda _: too_many))
    host = _ready_host(pipeline)
    before = _skipped()
    assert asyncio.run(host._take(pipeline)) is None
    assert taken == [] and _skipped() == before + 1

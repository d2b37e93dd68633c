"""How the host tells quiet inputs from a held-up worker (the live run must give the offline outputs).

A worker held up by its own publishing (ordered publishing waits for the previous step's sends) or
a loaded machine makes no pipeline call for seconds, and no reader can offer a record meanwhile.
Counted as the inputs' silence, that time made every partition idle at once, or fired the idle
heartbeat, and the clock moved past records still unread: in the live hostile run, 482 to 998
simulator ticks a run arrived late; none with these rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import RiskPipeline
from streams import host as host_module
from streams.host import STALL_S, PipelineHost


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The host's monotonic clock, set by the test."""
    now = [100.0]
    monkeypatch.setattr(host_module.time, "monotonic", lambda: now[0])
    return now


def test_a_stretch_without_pipeline_calls_does_not_count_as_the_inputs_silence(clock: list[float]) -> None:
    host = PipelineHost()
    assert host.working_wall() == 100.0
    clock[0] = 101.0  # the release timer's next poll: counted
    assert host.working_wall() == 101.0
    clock[0] = 109.0  # 8 s without a pipeline call: the worker was held up
    assert host.working_wall() == 101.0 + STALL_S
    clock[0] = 109.5
    assert host.working_wall() == 101.5 + STALL_S


class _Beats(list[int]):
    """The clock targets the host's idle heartbeat gave the pipeline."""


def _quiet_host(clock: list[float]) -> tuple[PipelineHost, RiskPipeline, _Beats]:
    host = PipelineHost()
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000, models=False))
    beats = _Beats()
    heartbeat = pipeline.heartbeat

    def counted(to_ms: int) -> list[Any]:
        beats.append(to_ms)
        return heartbeat(to_ms)

    pipeline.heartbeat = counted  # type: ignore[method-assign]
    host.pipeline = pipeline
    host.ready.set()
    host.last_event_ts_ms = 1_767_225_600_000
    clock[0] += 10.0  # 10 s since the last input
    return host, pipeline, beats


async def test_the_idle_heartbeat_waits_for_an_input_held_up_by_the_pipeline(clock: list[float]) -> None:
    host, _, beats = _quiet_host(clock)
    host._inputs_in_flight = 1  # a reader's record waits for the pipeline lock
    await host.heartbeat(5.0)
    assert beats == []
    host._input_done()  # offered: the reader reads its next record from now on
    await host.heartbeat(5.0)
    assert beats == []
    clock[0] += 6.0
    await host.heartbeat(5.0)
    assert len(beats) == 1


async def test_the_idle_heartbeat_waits_while_a_tick_partition_has_records_left(clock: list[float]) -> None:
    host, pipeline, beats = _quiet_host(clock)
    pipeline.at_head("mev.market.ticks", 0, False, exact=True)  # the feed knows it has records left
    await host.heartbeat(5.0)
    assert beats == []
    pipeline.at_head("mev.market.ticks", 0, True, exact=True)
    await host.heartbeat(5.0)
    assert len(beats) == 1


async def test_the_idle_heartbeat_checks_again_once_it_has_the_lock(clock: list[float]) -> None:
    host, _, beats = _quiet_host(clock)
    await host._lock.acquire()  # a step is running
    beat = asyncio.ensure_future(host.heartbeat(5.0))
    await asyncio.sleep(0)
    host.last_input_wall = clock[0]  # an input was offered meanwhile
    host._lock.release()
    await beat
    assert beats == []

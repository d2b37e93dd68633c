"""Recording and replay ordering."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.sim import Event, Incident, Simulator, SimulatorError, read_events, replay_order, write_events
from streams.sim.publisher import Pacer, encode

T0 = 1_767_225_600_000


def test_record_round_trip_keeps_dicts_and_raw_bytes(tmp_path: Path) -> None:
    events = list(Simulator(seed=9, start_ms=T0, rate_eps=200, duration_s=8,
                            incidents=[Incident.parse("bad-messages@2s/2s")]))
    path = tmp_path / "run.jsonl"
    assert write_events(events, path) == len(events)
    back = list(read_events(path))
    assert back == events
    assert sum(isinstance(e.value, bytes) for e in back) == 8
    assert any(len(e.value) > 1_048_576 for e in back if isinstance(e.value, bytes))


def test_replay_order_is_by_event_time_and_stable() -> None:
    evs = [Event("t", "a", {"ts_ms": 5}, 5), Event("t", "b", b"x", 3), Event("t", "c", {"ts_ms": 5}, 5),
           Event("t", "d", {"ts_ms": 1}, 1)]
    assert [e.key for e in replay_order(evs)] == ["d", "b", "a", "c"]


def test_bad_recorded_line_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b'{"topic":"t","key":"k","ts_ms":1,"value":{}}\n\n{"topic":"t"}\n')
    with pytest.raises(SimulatorError, match=r"broken\.jsonl:3"):
        list(read_events(path))


def test_encode_sends_raw_bytes_untouched() -> None:
    assert encode(Event("t", "ETH", b"{NaN", 1)) == (b"ETH", b"{NaN")
    assert encode(Event("t", "é", {"a": 1.5}, 1)) == ("é".encode(), b'{"a":1.5}')


def test_pacer_maps_event_time_to_wall_time() -> None:
    p = Pacer(speed=10)
    assert p.delay_s(T0, now=100.0) == 0.0
    assert p.delay_s(T0 + 5_000, now=100.1) == pytest.approx(0.4)
    assert p.delay_s(T0 + 5_000, now=101.0) == 0.0

"""risk.controls fed back into the simulator: HALT, REDUCE, RESUME."""

from __future__ import annotations

import statistics

import pytest

from streams.sim import Event, Simulator, SimulatorError, TradingState

T0 = 1_767_225_600_000


def run_with(controls: dict[int, list[dict]], seed: int = 11, duration_s: float = 60) -> list[Event]:
    """Run a simulation, applying controls once event time reaches each offset (s)."""
    sim = Simulator(seed=seed, start_ms=T0, rate_eps=200, duration_s=duration_s)
    pending = sorted(controls.items())
    out = []
    for ev in sim:
        while pending and ev.ts_ms >= T0 + pending[0][0] * 1000:
            for c in pending.pop(0)[1]:
                sim.apply_control(c)
        out.append(ev)
    return out


def positions(events: list[Event], strategy: str, action: str, lo_s: float, hi_s: float) -> list[dict]:
    return [e.value for e in events if e.topic == "mev.positions" and isinstance(e.value, dict)
            and e.value["strategy"] == strategy and e.value["action"] == action
            and T0 + lo_s * 1000 <= e.ts_ms < T0 + hi_s * 1000]


def test_halt_stops_new_opens_and_resume_restores() -> None:
    ev = run_with({20: [{"scope": "strategy:sandwich-univ2", "command": "HALT"}],
                   40: [{"scope": "strategy:sandwich-univ2", "command": "RESUME"}]})
    assert positions(ev, "sandwich-univ2", "open", 0, 20)
    assert positions(ev, "sandwich-univ2", "open", 20, 40) == []
    assert positions(ev, "sandwich-univ2", "close", 20, 40)  # it unwinds
    assert positions(ev, "sandwich-univ2", "open", 40, 60)
    assert positions(ev, "arb-dex-eth", "open", 20, 40)  # others carry on
    halted_stats = [e.value for e in ev if e.topic == "mev.strategy.stats" and e.key == "sandwich-univ2"
                    and T0 + 21_000 <= e.ts_ms < T0 + 40_000]
    assert halted_stats and all(v["bundles_submitted"] == 0 for v in halted_stats)


def test_portfolio_and_global_halt() -> None:
    ev = run_with({10: [{"scope": "portfolio:beta", "command": "HALT"}],
                   20: [{"scope": "global", "command": "HALT"}]}, duration_s=30)
    beta = {"sandwich-univ2", "backrun-arbitrum", "jit-univ3"}
    assert not [v for s in beta for v in positions(ev, s, "open", 10, 30)]
    assert positions(ev, "arb-dex-eth", "open", 10, 20)
    assert positions(ev, "arb-dex-eth", "open", 20, 30) == []


def test_reduce_halves_new_sizes() -> None:
    base = run_with({}, seed=13, duration_s=40)
    reduced = run_with({0: [{"scope": "strategy:arb-dex-eth", "command": "REDUCE"}]}, seed=13,
                       duration_s=40)
    def med(evs: list[Event]) -> float:
        return statistics.median(abs(v["notional_usd"]) for v in positions(evs, "arb-dex-eth", "open", 0, 40))
    assert 0.35 < med(reduced) / med(base) < 0.7


def test_controls_do_not_perturb_the_market_and_are_deterministic() -> None:
    controls = {15: [{"scope": "strategy:jit-univ3", "command": "HALT"}]}
    a, b = run_with(controls, duration_s=30), run_with(controls, duration_s=30)
    c = run_with({}, duration_s=30)
    assert a == b
    def ticks(evs: list[Event]) -> list[Event]:
        return [e for e in evs if e.topic == "mev.market.ticks"]
    assert ticks(a) == ticks(c)


def test_states_combine_most_restrictive_wins() -> None:
    sim = Simulator(seed=1, start_ms=T0, rate_eps=10, duration_s=1)
    sim.apply_control({"scope": "portfolio:beta", "command": "reduce"})
    assert sim.trading_state("jit-univ3") is TradingState.REDUCING
    sim.apply_control({"scope": "strategy:jit-univ3", "command": "HALT"})
    assert sim.trading_state("jit-univ3") is TradingState.HALTED
    sim.apply_control({"scope": "strategy:jit-univ3", "command": "RESUME"})
    assert sim.trading_state("jit-univ3") is TradingState.REDUCING
    assert sim.trading_state("arb-dex-eth") is TradingState.ACTIVE
    for bad in ({"scope": "desk", "command": "HALT"}, {"scope": "global", "command": "PANIC"}, {}):
        with pytest.raises(SimulatorError):
            sim.apply_control(bad)

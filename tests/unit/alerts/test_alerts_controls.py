"""Kill-switch decisions and offline back-testing."""

from __future__ import annotations

import pytest

from agents.alerts.backtest import run_rules
from agents.alerts.controls import KillSwitch, TradingState
from agents.alerts.errors import ControlError
from agents.alerts.rules import load_rules
from agents.alerts.summary import summarize, summarize_states

from .helpers import T0, M, engine, rule, snap

HALT_RULE = rule(name="Critical", expr='snapshot.rating == "CRITICAL"', severity="critical",
                 action={"type": "HALT", "scope": "portfolio"})


def test_firing_alert_with_action_halts_its_portfolio_once() -> None:
    eng = engine(HALT_RULE)
    ks = KillSwitch()
    ev = eng.evaluate("portfolio", "p1", snap(1.0, rating="CRITICAL"), T0)[0].to_dict()
    assert ev["action"] == {"type": "HALT", "scope": "portfolio", "target": "portfolio:p1"}
    c = ks.from_alert(ev)
    assert c is not None
    assert (c.scope, c.command, c.state, c.actor, c.ts_ms, c.alert_id) == (
        "portfolio:p1", "HALT", "HALTED", "rule:Critical", T0, ev["id"])
    assert ks.effective_state("s9", "p1") is TradingState.HALTED
    assert ks.effective_state("s9", "p2") is TradingState.ACTIVE
    assert ks.from_alert(ev) is None  # already halted
    assert c.control_id == KillSwitch().from_alert(ev).control_id  # deterministic


def test_rules_never_loosen_and_operators_resume() -> None:
    ks = KillSwitch()
    ks.command("strategy:s1", "HALT", actor="alice", reason="manual", ts_ms=1)
    reduce_ev = {"transition": "firing", "rule": "Gas", "ts_ms": 2, "id": "a",
                 "action": {"type": "REDUCE", "scope": "strategy", "target": "strategy:s1"}}
    assert ks.from_alert(reduce_ev) is None
    c = ks.command("strategy:s1", "RESUME", actor="alice", reason="fixed", ts_ms=3)
    assert (c.state, ks.state("strategy:s1")) == ("ACTIVE", TradingState.ACTIVE)
    c2 = ks.from_alert(reduce_ev)
    assert c2 is not None and c2.state == "REDUCING"
    assert KillSwitch.from_dict(ks.to_dict()).to_dict() == {"strategy:s1": "REDUCING"}


def test_resolution_does_not_resume_and_bad_commands_raise() -> None:
    ks = KillSwitch()
    assert ks.from_alert({"transition": "resolved", "action": {"type": "HALT"}}) is None
    with pytest.raises(ControlError):
        ks.command("desk:1", "HALT", actor="a", reason="", ts_ms=0)
    with pytest.raises(ControlError):
        ks.command("global", "PANIC", actor="a", reason="", ts_ms=0)


def test_backtest_default_rules_over_recorded_contexts() -> None:
    events = []
    for i in range(10):
        ts = T0 + i * 30_000
        events.append(("snapshot", ts, snap(12_000.0 if i < 6 else 100.0)))
        events.append(("source", ts, {"name": "gas-tracker", "age_ms": 40_000 if i == 3 else 10,
                                      "limit_ms": 30_000}))
        events.append(("strategy", ts, {"strategy": "s1", "portfolio": "p1",
                                        "drawdown_usd": 31_000.0 if i == 5 else 0.0,
                                        "bundles_submitted": 5, "revert_rate": 0.0,
                                        "gas_to_gross": 0.1, "inclusion_rate": 0.5}))
    out = run_rules(events, load_rules(), until_ms=T0 + 10 * M)
    got = [(e["rule"], e["transition"], e["ts_ms"] - T0) for e in out]
    assert got == [("HighVaR95", "firing", 30_000),  # for: 30s
                   ("VaR95AboveTenPctOfExposure", "firing", 60_000),  # for: 1m
                   ("StaleFeed", "firing", 90_000),
                   ("StaleFeed", "resolved", 120_000),
                   ("StrategyDrawdownLimit", "firing", 150_000),
                   ("StrategyDrawdownLimit", "resolved", 180_000),
                   ("HighVaR95", "resolved", 240_000),  # false at 180 s + keep_firing_for 1m
                   ("VaR95AboveTenPctOfExposure", "resolved", 300_000)]  # keep_firing_for 2m
    assert out[4]["action"]["target"] == "strategy:s1"
    assert out == run_rules(events, load_rules(), until_ms=T0 + 10 * M)


def test_summary_and_views_from_a_real_sequence() -> None:
    eng = engine(rule(escalate=[{"after": "10m", "severity": "critical"}]))
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out += eng.evaluate("portfolio", "p2", snap(12_000, portfolio="p2"), T0 + M)
    out += eng.tick(T0 + 12 * M)
    out += eng.acknowledge(out[0].id, "alice", "", T0 + 15 * M)
    views = eng.views(T0 + 16 * M)
    assert [(v["entity_id"], v["severity"], v["acknowledged"], v["transition"]) for v in views] \
        == [("p1", "critical", True, "state"), ("p2", "critical", False, "state")]
    out += eng.evaluate("portfolio", "p2", snap(1.0, portfolio="p2"), T0 + 20 * M)
    s = summarize([e.to_dict() for e in out])
    # p1 fired at T0, acknowledged at +15 min; p2 fired at +1 min, resolved at +20 min
    assert s == {"total_alerts": 2, "by_severity": {"critical": 2}, "by_type": {"BigVaR": 2},
                 "active_alerts": 1, "acknowledged_alerts": 1, "average_response_time": 15.0,
                 "by_state": {"firing": 0, "acknowledged": 1, "silenced": 0, "resolved": 1},
                 "resolved_alerts": 1, "mtta_seconds": 900.0, "mttr_seconds": 1140.0,
                 "mtta_seconds_by_severity": {"critical": 900.0},
                 "mttr_seconds_by_severity": {"critical": 1140.0}}
    # the same figures from the latest state of each alert (what the API holds)
    latest = {e.id: e.to_dict() for e in out}
    assert summarize_states(latest.values()) == s
    assert summarize([e.to_dict() for e in out], start_ms=T0 + M)["total_alerts"] == 1

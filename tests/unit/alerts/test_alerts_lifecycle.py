"""Exact alert sequences under event time: for, keep_firing_for, cooldown, escalation,
acknowledgement, manual resolve, silences, inhibition, determinism, state round-trip."""

from __future__ import annotations

import json

import pytest

from agents.alerts.engine import AlertEngine
from agents.alerts.errors import AlertNotFoundError, AlertsError, RuleError
from agents.alerts.lifecycle import alert_id

from .helpers import T0, M, S, engine, rule, ruleset, seq, snap


def test_pending_fires_exactly_when_for_elapses() -> None:
    eng = engine(rule(**{"for": "30s"}))
    assert eng.evaluate("portfolio", "p1", snap(12_000), T0) == []
    assert eng.tick(T0 + 29_999) == []
    assert [a.status for a in eng.alerts(include_pending=True)] == ["pending"]
    assert seq(eng.tick(T0 + 30 * S)) == [("firing", 30_000, "high")]


def test_firing_is_stamped_with_due_time_whatever_the_tick_cadence() -> None:
    eng = engine(rule(**{"for": "30s"}))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert seq(eng.tick(T0 + 10 * M)) == [("firing", 30_000, "high")]


def test_evaluate_after_due_time_fires_then_sees_false() -> None:
    eng = engine(rule(**{"for": "30s"}))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out = eng.evaluate("portfolio", "p1", snap(1_000), T0 + 45 * S)
    assert seq(out) == [("firing", 30_000, "high"), ("resolved", 45_000, "high")]


def test_pending_goes_back_to_inactive_without_events() -> None:
    eng = engine(rule(**{"for": "30s"}))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert eng.evaluate("portfolio", "p1", snap(9_000), T0 + 10 * S) == []
    assert eng.tick(T0 + M) == []
    assert eng.alerts(include_pending=True) == []


def test_for_zero_fires_on_first_true_evaluation() -> None:
    eng = engine()
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert seq(out) == [("firing", 0, "high")]
    ev = out[0].to_dict()
    assert ev["startsAt"] == "2023-11-14T22:13:20Z"
    assert ev["endsAt"] == "0001-01-01T00:00:00Z"
    assert ev["message"] == "VaR 12000"
    assert ev["labels"] == {"alertname": "BigVaR", "portfolio": "p1", "severity": "high"}
    assert ev["values"]["var_95_usd"] == 12_000
    assert ev["notify"] is True and ev["rule_name"] == "BigVaR"


def test_keep_firing_for_holds_then_resolves_at_due_time() -> None:
    eng = engine(rule(keep_firing_for="2m"))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert eng.evaluate("portfolio", "p1", snap(1_000), T0 + 10 * S) == []
    assert eng.tick(T0 + 10 * S + 2 * M - 1) == []
    out = eng.tick(T0 + 10 * M)
    assert seq(out) == [("resolved", 130_000, "high")]
    assert out[0].to_dict()["endsAt"] == "2023-11-14T22:15:30Z"


def test_keep_firing_for_is_cancelled_when_condition_returns() -> None:
    eng = engine(rule(keep_firing_for="2m"))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    eng.evaluate("portfolio", "p1", snap(1_000), T0 + 10 * S)
    assert eng.evaluate("portfolio", "p1", snap(12_000), T0 + 100 * S) == []
    assert eng.tick(T0 + 10 * M) == []
    assert [a.status for a in eng.alerts()] == ["firing"]


def test_duplicates_collapse_and_cooldown_limits_repeats() -> None:
    eng = engine(rule(cooldown="10m"))
    out = []
    for i in range(0, 25):  # a true snapshot every minute for 25 minutes
        out += eng.evaluate("portfolio", "p1", snap(12_000), T0 + i * M)
    out += eng.tick(T0 + 25 * M)
    assert seq(out) == [("firing", 0, "high"), ("repeat", 600_000, "high"),
                        ("repeat", 1_200_000, "high")]
    assert len({e.id for e in out}) == 1  # one alert throughout
    assert len({e.event_id for e in out}) == 3


def test_zero_cooldown_notifies_once_and_resolution_notifies_once() -> None:
    eng = engine()
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out += eng.tick(T0 + 5 * M)
    out += eng.evaluate("portfolio", "p1", snap(1_000), T0 + 6 * M)
    out += eng.evaluate("portfolio", "p1", snap(1_000), T0 + 7 * M)
    out += eng.tick(T0 + 8 * M)
    assert seq(out) == [("firing", 0, "high"), ("resolved", 360_000, "high")]
    assert [e.notify for e in out] == [True, True]
    assert out[1].to_dict()["resolved_at"] == "2023-11-14T22:19:20Z"


ESC = rule(cooldown="60m", channels=["email", "slack"],
           escalate=[{"after": "30m", "severity": "critical", "channels": ["sms"]},
                     {"after": "60m", "severity": "critical", "channels": ["webhook"]}])


def test_escalation_steps_fire_at_their_times_while_unacknowledged() -> None:
    eng = engine(ESC)
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out += eng.tick(T0 + 29 * M)
    out += eng.tick(T0 + 2 * 60 * M)
    assert seq(out) == [("firing", 0, "high"), ("escalated", 1_800_000, "critical"),
                        ("escalated", 3_600_000, "critical"), ("repeat", 7_200_000, "critical")]
    first = out[1].to_dict()
    # the seed's escalated_from: the original alert's id; the severity it left beside it
    assert first["escalated_from"] == out[0].id and first["escalation_level"] == 1
    assert first["escalated_from_severity"] == "high"
    assert first["escalated_at_ms"] == T0 + 30 * M and first["escalated_at"].endswith("Z")
    assert out[0].to_dict()["escalated_from"] is None and out[0].to_dict()["escalated_at"] is None
    assert first["channels"] == ["email", "slack", "sms"]
    assert out[2].to_dict()["channels"] == ["email", "slack", "sms", "webhook"]


def test_seed_escalation_fields() -> None:
    eng = engine(rule(severity="HIGH", cooldown_minutes=60,
                      escalate=[{"after_minutes": 30, "new_severity": "CRITICAL"}]))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert seq(eng.tick(T0 + 31 * M)) == [("escalated", 1_800_000, "critical")]


def test_seed_escalate_to_recipients_are_routed_not_read_as_a_severity() -> None:
    eng = engine(rule(severity="HIGH", cooldown_minutes=60, channels=["slack"],
                      escalate=[{"after_minutes": 30, "escalate_to": ["risk_manager", "email"]},
                                {"after_minutes": 60, "new_severity": "CRITICAL", "escalate_to": "cto"}]))
    fired = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out = eng.tick(T0 + 31 * M) + eng.tick(T0 + 61 * M)
    assert seq(out) == [("escalated", 1_800_000, "high"), ("escalated", 3_600_000, "critical")]
    assert out[0].to_dict()["channels"] == ["slack", "risk_manager", "email"]
    assert out[1].to_dict()["channels"] == ["slack", "risk_manager", "email", "cto"]
    assert {e.to_dict()["escalated_from"] for e in out} == {fired[0].id}


def test_an_escalation_step_needs_something_to_do() -> None:
    with pytest.raises(RuleError, match="escalate_to"):
        engine(rule(escalate=[{"after_minutes": 30}]))


def test_acknowledgement_stops_escalation_and_repeats() -> None:
    eng = engine(ESC)
    fired = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out = eng.acknowledge(fired[0].id, "oncall-1", "looking", T0 + 10 * M)
    assert seq(out) == [("acknowledged", 600_000, "high")]
    ack = out[0].to_dict()
    assert (ack["acknowledged"], ack["acknowledged_by"], ack["ack_comment"]) == (
        True, "oncall-1", "looking")
    assert ack["acknowledged_at"] == "2023-11-14T22:23:20Z" and ack["notify"] is False
    assert eng.tick(T0 + 5 * 60 * M) == []
    assert eng.acknowledge(fired[0].fingerprint, "oncall-2", "again", T0 + 301 * M) == []


def test_acknowledge_after_escalation_keeps_escalated_severity() -> None:
    eng = engine(ESC)
    fired = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out = eng.acknowledge(fired[0].fingerprint, "oncall-1", "", T0 + 40 * M)
    assert seq(out) == [("escalated", 1_800_000, "critical"),
                        ("acknowledged", 2_400_000, "critical")]
    assert eng.tick(T0 + 3 * 60 * M) == []


def test_manual_resolve_ends_alert_and_a_new_one_starts_if_still_true() -> None:
    eng = engine(ESC)
    fired = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    out = eng.resolve(fired[0].id, "oncall-2", "fixed by hand", T0 + 5 * M)
    assert seq(out) == [("resolved", 300_000, "high")]
    d = out[0].to_dict()
    assert d["resolved_by"] == "oncall-2" and d["annotations"]["comment"] == "fixed by hand"
    assert eng.tick(T0 + 3 * 60 * M) == []  # no escalation after resolve
    with pytest.raises(AlertNotFoundError):
        eng.acknowledge(fired[0].id, "oncall-1", "", T0 + 181 * M)
    again = eng.evaluate("portfolio", "p1", snap(12_000), T0 + 182 * M)
    assert seq(again) == [("firing", 182 * M, "high")]
    assert again[0].id != fired[0].id and again[0].fingerprint == fired[0].fingerprint


def test_unknown_alert_raises_not_found() -> None:
    eng = engine()
    with pytest.raises(AlertNotFoundError, match="no firing alert"):
        eng.resolve("nope", "oncall-2", "", T0)


def test_silence_suppresses_notifications_but_alert_stays_visible() -> None:
    eng = engine(rule(cooldown="10m"))
    sid = eng.add_silence(['portfolio="p1"'], T0 - M, T0 + 15 * M, "carol", "maintenance")
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert seq(out) == [("firing", 0, "high")]
    assert (out[0].silenced, out[0].notify) == (True, False)
    assert [a.rule for a in eng.alerts()] == ["BigVaR"]
    assert eng.tick(T0 + 14 * M) == []  # no repeats while silenced
    after = eng.tick(T0 + 15 * M)  # silence expired: the alert was never notified
    assert seq(after) == [("repeat", 900_000, "high")]
    assert (after[0].silenced, after[0].notify) == (False, True)
    assert eng.silences() == [] and sid


def test_silence_added_while_firing_emits_one_silenced_event() -> None:
    eng = engine(rule(cooldown="10m"))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    eng.add_silence({"alertname": "BigVaR"}, T0 + M, T0 + 60 * M, "carol", "known")
    out = eng.tick(T0 + 2 * M)
    assert seq(out) == [("silenced", 120_000, "high")]
    assert (out[0].notify, out[0].silenced) == (False, True)
    assert eng.tick(T0 + 30 * M) == []


def test_silence_not_matching_does_nothing_and_delete_works() -> None:
    eng = engine()
    sid = eng.add_silence(['portfolio="p2"'], T0, T0 + M, "c", "")
    assert eng.evaluate("portfolio", "p1", snap(12_000), T0)[0].notify is True
    assert eng.delete_silence(sid) is True and eng.delete_silence(sid) is False
    with pytest.raises(AlertsError, match="ends_ms"):
        eng.add_silence(['portfolio="p1"'], T0, T0, "c", "")
    with pytest.raises(AlertsError, match="bad silence"):
        eng.add_silence(["portfolio=p1 broken ~~"], T0, T0 + 1, "c", "")


INHIBIT = [{"source_matchers": ['severity="critical"'],
            "target_matchers": ['severity=~"warning|high"'], "equal": ["portfolio"]}]


def test_critical_inhibits_lesser_alert_of_same_portfolio_only() -> None:
    crit = rule(name="Critical", expr='snapshot.rating == "CRITICAL"', severity="critical")
    eng = engine(rule(), crit, inhibit=INHIBIT)
    out = eng.evaluate("portfolio", "p1", snap(12_000, rating="CRITICAL"), T0)
    by_rule = {e.rule: e for e in out}
    assert by_rule["Critical"].notify is True
    assert (by_rule["BigVaR"].inhibited, by_rule["BigVaR"].notify) == (True, False)
    other = eng.evaluate("portfolio", "p2", snap(12_000, portfolio="p2"), T0)
    assert (other[0].inhibited, other[0].notify) == (False, True)
    # the critical alert resolves: the inhibited alert is finally notified
    out = eng.evaluate("portfolio", "p1", snap(12_000), T0 + M)
    assert [(e.rule, e.transition, e.notify) for e in out] == [
        ("Critical", "resolved", True), ("BigVaR", "repeat", True)]


def test_expression_error_counts_and_does_not_fire() -> None:
    eng = engine()
    assert eng.evaluate("portfolio", "p1", {"portfolio": "p1"}, T0) == []
    assert eng.evaluate("portfolio", "p1", {"var_95_usd": None}, T0) == []
    assert eng.errors == {"BigVaR": 2}
    assert "KeyError" in eng.last_error["BigVaR"] or "TypeError" in eng.last_error["BigVaR"]


def test_integers_in_context_are_doubles_for_cel() -> None:
    eng = engine(rule(expr="snapshot.var_95_usd > 0.1 * snapshot.total_exposure_usd"))
    out = eng.evaluate("portfolio", "p1", {"var_95_usd": 20_000, "total_exposure_usd": 100_000},
                       T0)
    assert seq(out) == [("firing", 0, "high")] and eng.errors == {}


def test_late_evaluation_is_dropped() -> None:
    eng = engine(rule(**{"for": "1m"}))
    eng.evaluate("portfolio", "p1", snap(12_000), T0 + M)
    assert eng.evaluate("portfolio", "p1", snap(1_000), T0) == []
    assert eng.late_dropped == 1
    assert seq(eng.tick(T0 + 2 * M)) == [("firing", 120_000, "high")]


def _scenario(eng: AlertEngine, start: int, stop: int) -> list[dict]:
    """A mixed input: two portfolios, varying VaR, ticks; events as dicts."""
    out = []
    for i in range(start, stop):
        ts = T0 + i * 20 * S
        for pf in ("p1", "p2"):
            var = 12_000.0 if (i // (7 if pf == "p1" else 11)) % 2 == 0 else 500.0
            out += [e.to_dict() for e in eng.evaluate("portfolio", pf, snap(var, portfolio=pf),
                                                        ts)]
        if i % 5 == 0:
            out += [e.to_dict() for e in eng.tick(ts + 10 * S)]
        if i == 40:
            fp = next(a.fingerprint for a in eng.alerts() if a.entity_id == "p2") \
                if any(a.entity_id == "p2" for a in eng.alerts()) else None
            if fp:
                out += [e.to_dict() for e in eng.acknowledge(fp, "oncall-1", "", ts)]
    return out


SCENARIO_RULE = rule(**{"for": "40s", "keep_firing_for": "30s", "cooldown": "1m",
                        "escalate": [{"after": "90s", "severity": "critical"}]})


def test_same_input_twice_gives_identical_output() -> None:
    a = _scenario(engine(SCENARIO_RULE), 0, 120)
    b = _scenario(engine(SCENARIO_RULE), 0, 120)
    assert a == b
    assert {e["transition"] for e in a} >= {"firing", "repeat", "escalated", "resolved"}


def test_state_round_trip_mid_sequence_gives_same_output() -> None:
    whole = _scenario(engine(SCENARIO_RULE), 0, 120)
    first = engine(SCENARIO_RULE)
    part = _scenario(first, 0, 57)
    dumped = json.loads(json.dumps(first.to_dict()))  # through JSON, as a table would
    second = AlertEngine.from_dict(first.ruleset, dumped)
    part += _scenario(second, 57, 120)
    assert part == whole


def test_ids_are_deterministic_functions_of_fingerprint_and_time() -> None:
    ev = engine().evaluate("portfolio", "p1", snap(12_000), T0)[0]
    assert ev.id == alert_id(ev.fingerprint, T0)
    assert len(ev.event_id) == 32 and len(ev.id) == 16


def test_reload_keeps_unchanged_rules_and_resolves_changed_ones() -> None:
    other = rule(name="Conc", expr="snapshot.max_concentration > 0.5", severity="warning")
    eng = engine(rule(**{"for": "1m"}), other)
    eng.evaluate("portfolio", "p1", snap(12_000, max_concentration=0.9), T0)
    assert [a.rule for a in eng.alerts(include_pending=True)] == ["BigVaR", "Conc"]
    changed = rule(name="Conc", expr="snapshot.max_concentration > 0.6", severity="warning")
    out = eng.reload(ruleset(rule(**{"for": "1m"}), changed), T0 + S)
    assert [(e.rule, e.transition, e.resolved_by) for e in out] == [
        ("Conc", "resolved", "reload")]
    # BigVaR kept its pending state: it fires at T0 + 1m, not 1m after the reload
    assert seq(eng.tick(T0 + M)) == [("firing", 60_000, "high")]


def test_forget_resolves_the_entity_alerts_only() -> None:
    eng = engine(rule(**{"for": "1m"}))
    eng.evaluate("portfolio", "p1", snap(12_000), T0)
    eng.evaluate("portfolio", "p2", snap(12_000, portfolio="p2"), T0)
    eng.tick(T0 + 2 * M)
    out = eng.forget("portfolio", "p1", T0 + 3 * M)
    assert [(e.entity_id, e.transition, e.resolved_by) for e in out] == [
        ("p1", "resolved", "entity-removed")]
    assert [a.entity_id for a in eng.alerts()] == ["p2"]


def test_labels_stay_stable_through_escalation_and_silenced_escalation_is_quiet() -> None:
    eng = engine(ESC)
    eng.add_silence(['severity="critical"'], T0, T0 + 50 * M, "carol", "known incident")
    fired = eng.evaluate("portfolio", "p1", snap(12_000), T0)
    assert fired[0].notify is True  # high: not matched by the silence
    out = eng.tick(T0 + 31 * M)
    assert [(e.transition, e.severity, e.labels["severity"], e.silenced, e.notify)
            for e in out] == [("escalated", "critical", "high", True, False)]
    assert fired[0].labels == out[0].labels


def test_strategy_rule_can_halt_its_portfolio() -> None:
    eng = engine(rule(name="Dd", scope="strategy", expr="strategy.drawdown_usd > 10.0",
                      action={"type": "HALT", "scope": "portfolio"}))
    ev = eng.evaluate("strategy", "s1", {"strategy": "s1", "portfolio": "pA",
                                          "drawdown_usd": 50}, T0)[0]
    assert ev.action == {"type": "HALT", "scope": "portfolio", "target": "portfolio:pA"}
    assert ev.labels == {"alertname": "Dd", "strategy": "s1", "severity": "high"}

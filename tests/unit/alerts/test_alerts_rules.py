"""Rule loading: the shipped file, seed aliases, documented errors, activation pruning."""

from __future__ import annotations

import random
from pathlib import Path

import cel
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.alerts.errors import RuleError
from agents.alerts.rules import (
    DEFAULT_RULES_PATH,
    SAMPLE_CONTEXT,
    check_file,
    load_rules,
    parse_rules,
)
from agents.alerts.timeutil import parse_duration

from .helpers import rule


def test_default_rules_load_and_cover_the_required_cases() -> None:
    rs = load_rules()
    names = set(rs.by_name)
    assert names >= {"VaR95AboveTenPctOfExposure", "HighVaR95", "HighConcentration",
                     "PortfolioRatingHigh", "PortfolioRatingCritical", "StrategyDrawdownLimit",
                     "RevertRateSpike", "GasOverGrossProfit", "InclusionRateCollapse",
                     "StaleFeed", "VaRBacktestYellow", "VaRBacktestRed"}
    crit = rs.by_name["PortfolioRatingCritical"]
    assert crit.action is not None and (crit.action.type, crit.action.scope) == (
        "HALT", "portfolio")
    seed = rs.by_name["HighVaR95"]
    assert (seed.severity, seed.cooldown_ms, seed.channels) == ("high", 3_600_000,
                                                                ("email", "slack"))
    assert seed.escalate[0].after_ms == 30 * 60_000 and seed.escalate[0].severity == "critical"
    assert len(rs.inhibit_rules) == 2
    assert check_file(DEFAULT_RULES_PATH) == []


def test_seed_aliases() -> None:
    rs = parse_rules([{"name": "high_var", "condition": "snapshot.var_95_usd > 10000.0",
                       "severity": "MEDIUM", "cooldown_minutes": 30, "channels": ["slack"],
                       "message": "VaR high: {{ var_95_usd | usd }}"}])
    r = rs.rules[0]
    assert (r.severity, r.cooldown_ms, r.annotations["summary"]) == (
        "warning", 1_800_000, "VaR high: {{ var_95_usd | usd }}")


def test_durations() -> None:
    assert parse_duration("1h30m") == 5_400_000
    assert parse_duration("1.5s") == 1_500
    assert parse_duration(0) == 0
    for bad in ("5", 5, "5 minutes", "m", "", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(("raw", "message"), [
    (rule(expr="snapshot.var_95_usd >"), r"rule 'BigVaR': bad CEL expression"),
    (rule(severity="urgent"), r"rule 'BigVaR': unknown severity 'urgent'"),
    ({"expr": "true", "severity": "high"}, r"rule #1: missing 'name'"),
    (rule(**{"for": "5 minutes"}), r"rule 'BigVaR': 'for': bad duration"),
    (rule(cooldown=30), r"rule 'BigVaR': 'cooldown': bad duration 30: give a unit"),
    (rule(expr="snapshot.var_95_usd * 2 > 1.0"), r"fails on a portfolio context: Unsupported"),
    (rule(expr="snapshot.var_95_usd"), r"must return a bool, got float"),
    (rule(expr="nosuchfn(snapshot.var_95_usd)"), r"Undefined variable or function"),
    (rule(scope="planet"), r"unknown scope 'planet'"),
    (rule(colour="red"), r"unknown field\(s\) colour"),
    (rule(action={"type": "NUKE"}), r"action type 'NUKE'"),
    (rule(action={"type": "HALT", "scope": "strategy"}), r"needs a strategy-scope rule"),
    (rule(labels={"severity": "x"}), r"label 'severity' is set by the engine"),
    (rule(annotations={"summary": "{{ x | shout }}"}), r"unknown template filter 'shout'"),
    (rule(escalate=[{"severity": "critical"}]), r"escalate\[0\]: missing 'after'"),
])
def test_bad_rules_give_documented_errors(tmp_path: Path, raw: dict, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [raw]}))
    with pytest.raises(RuleError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)
    problems = check_file(path)
    assert len(problems) == 1 and str(path) in problems[0]


def test_duplicate_names_and_all_problems_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [rule(), rule(), rule(name="X", severity="?")]}))
    problems = check_file(path)
    assert problems == [f"{path}: rule 'BigVaR': duplicate name",
                        f"{path}: rule 'X': unknown severity '?' (one of info, warning, high, "
                        "critical or seed names LOW, MEDIUM, HIGH, CRITICAL)"]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    assert "cannot read" in check_file(tmp_path / "missing.yaml")[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    assert "invalid YAML" in check_file(bad)[0]
    bad.write_text("just: text")
    assert check_file(bad) == [f"{bad}: expected a mapping with a 'rules' list"]


def test_definition_hash_tracks_the_definition_only() -> None:
    a = parse_rules([rule()]).rules[0]
    b = parse_rules([rule()]).rules[0]
    c = parse_rules([rule(cooldown="5m")]).rules[0]
    assert a.definition_hash == b.definition_hash != c.definition_hash


def _random_snapshot(rng: random.Random) -> dict:
    snap = dict(SAMPLE_CONTEXT["portfolio"])
    for k in ("total_exposure_usd", "var_95_usd", "max_concentration"):
        if rng.random() < 0.1:
            snap.pop(k)
        else:
            snap[k] = rng.choice([0, 1, 0.05, 0.6, 5_000.0, 15_000, 200_000.0])
    snap["rating"] = rng.choice(["LOW", "MEDIUM", "HIGH", "CRITICAL"])
    if rng.random() < 0.3:
        snap.pop("backtest")
    else:
        snap["backtest"] = {"zone": rng.choice(["green", "yellow", "red"]), "exceptions": 3}
    return snap


def _cel_full(program, snap: dict):
    """Reference: the whole context, ints as doubles, straight into CEL."""
    def num(v):
        if type(v) is int:
            return float(v)
        return {k: num(x) for k, x in v.items()} if isinstance(v, dict) else v
    try:
        return program.execute(cel.Context(variables={"snapshot": num(snap)}))
    except Exception as e:
        return type(e).__name__


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_pruned_activation_matches_full_context(seed: int) -> None:
    rs = load_rules()
    plan = rs.plans["portfolio"]
    snap = _random_snapshot(random.Random(seed))
    env = cel.Context(variables=plan.activation(snap, "p1", 0))
    for r in plan.rules:
        try:
            got = r.program.execute(env)
        except Exception as e:
            got = type(e).__name__
        assert got == _cel_full(r.program, snap), r.name

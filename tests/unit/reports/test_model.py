"""The report core on records made here: lifecycles and MTTA/MTTR, breaches, the backtest rebuilt
from the engine's cumulative blocks, strategies, data quality, audit heads, and the model."""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agents.audit.chain import AuditChain
from agents.reports.day import day_bounds
from agents.reports.errors import ReportError
from agents.reports.figures import BacktestFold, Limit, breaches
from agents.reports.lifecycle import lifecycles, mttx, stale_minutes
from agents.reports.model import ReportOptions, build_model
from agents.reports.quality import audit_section, dead_letters
from agents.reports.strategies import strategy_rows

START, END = day_bounds("2025-12-01")
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "json" / "risk.report.daily.schema.json").read_text()
)


def alert(
    aid: str,
    transition: str,
    ts: int,
    severity: str = "high",
    rule: str = "R",
    scope: str = "portfolio",
    entity: str = "alpha",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": aid,
        "rule": rule,
        "severity": severity,
        "scope": scope,
        "entity_id": entity,
        "transition": transition,
        "ts_ms": ts,
        "message": f"{rule} on {entity}",
        **extra,
    }


def snapshot(ts: int, portfolio: str = "alpha", **fields: Any) -> dict[str, Any]:
    return {"portfolio": portfolio, "ts_ms": ts, **fields}


def test_lifecycle_keeps_the_days_firings_with_who_and_when() -> None:
    events = [
        alert("old", "firing", START - 1),  # fired the day before: not this day's
        alert("old", "acknowledged", START + 5, acknowledged_by="ops"),
        alert("a", "firing", START + 1_000, severity="warning"),
        alert("a", "escalated", START + 61_000, severity="critical"),
        alert("a", "acknowledged", START + 91_000, severity="critical", acknowledged_by="ops-1"),
        alert("a", "acknowledged", START + 95_000, severity="critical", acknowledged_by="ops-2"),
        alert("a", "resolved", START + 301_000, severity="critical", resolved_by="ops-3"),
        alert("b", "firing", END - 10_000),
        alert("b", "resolved", END + 10_000),  # after the day: b is still open
    ]
    lives = {a["id"]: a for a in lifecycles(events, START, END)}
    assert set(lives) == {"a", "b"}
    a = lives["a"]
    assert (a["severity"], a["escalations"], a["acknowledged_by"], a["resolved_by"]) == (
        "critical",
        1,
        "ops-1",
        "ops-3",
    )
    assert (a["tta_s"], a["ttr_s"]) == (90.0, 300.0)
    assert (lives["b"]["resolved_ts_ms"], lives["b"]["ttr_s"]) == (None, None)


def test_mtta_and_mttr_per_severity_and_rule() -> None:
    events = []
    for n, (sev, rule, ack_s, res_s) in enumerate(
        [("high", "X", 60, 600), ("high", "X", 120, None), ("high", "Y", None, 30), ("warning", "Y", 10, 20)]
    ):
        t0 = START + n * 1_000_000
        events.append(alert(str(n), "firing", t0, severity=sev, rule=rule))
        if ack_s is not None:
            events.append(alert(str(n), "acknowledged", t0 + ack_s * 1000, severity=sev, rule=rule))
        if res_s is not None:
            events.append(alert(str(n), "resolved", t0 + res_s * 1000, severity=sev, rule=rule))
    m = mttx(lifecycles(events, START, END))
    assert m["by_severity"]["high"] == {
        "alerts": 3,
        "acknowledged": 2,
        "resolved": 2,
        "mtta_s": 90.0,
        "mttr_s": 315.0,
    }
    assert m["by_severity"]["warning"]["mtta_s"] == 10.0
    assert list(m["by_severity"]) == ["high", "warning"]  # highest first
    assert m["by_rule"]["Y"] == {
        "alerts": 2,
        "acknowledged": 1,
        "resolved": 2,
        "mtta_s": 10.0,
        "mttr_s": 25.0,
    }
    assert m["overall"]["mtta_s"] == pytest.approx((60 + 120 + 10) / 3)


def test_breaches_count_stretches_and_keep_an_open_one() -> None:
    values = [1, 12, 15, None, 9, 11, 11, 3, 20, 25]
    snaps = [snapshot(START + i * 1000, var_95_usd=v) for i, v in enumerate(values)]
    found = breaches(snaps, Limit("v", "var_95_usd", 10.0))
    assert [(b["start_ts_ms"] - START, b["end_ts_ms"] - START, b["peak"], b["open"]) for b in found] == [
        (1000, 4000, 15.0, False),
        (5000, 7000, 11.0, False),
        (8000, 9000, 25.0, True),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backtest_flags_rebuilt_from_cumulative_blocks_once_the_engine_series_is_full(seed: int) -> None:
    """The engine keeps the last ``history`` flags; its blocks give counts only. Coalesced snapshots
    between bars repeat the block. The fold recovers every flag it can and counts the rest."""
    rng = random.Random(seed)
    history, bar_ms = 20, 1000
    engine: deque[bool] = deque(maxlen=history)
    truth: list[bool] = []
    snaps = []
    for bar in range(100):
        ts = START + bar * bar_ms
        if bar > 0:
            hit = rng.random() < 0.2
            engine.append(hit)
            truth.append(hit)
        block = {
            "observations": len(engine),
            "exceptions": sum(engine),
            "confidence": 0.99,
            "zone": "green",
            "zone_exceptions": 0,
            "zone_observations": len(engine),
        }
        snaps.append(snapshot(ts, backtest=block))
        snaps.append(snapshot(ts + 250, backtest=dict(block)))  # a coalesced snapshot: no bar judged
    fold = BacktestFold(bar_ms, history)
    for s in snaps:
        fold.add(s)
    # the first `history` flags come from growing counts; later ones from +1/-1 or the dropped flag
    assert fold.unknown == 0
    assert fold.flags == truth
    assert fold.result()["day"]["exceptions"] == sum(truth)


def test_backtest_fold_counts_a_restart_jump_as_unknown() -> None:
    fold = BacktestFold(1000, 1000)
    for ts, obs, exc in [(0, 3, 0), (1000, 4, 1), (2000, 40, 9), (3000, 41, 9)]:
        fold.add(
            snapshot(START + ts, backtest={"observations": obs, "exceptions": exc, "zone_exceptions": 9})
        )
    assert (fold.flags, fold.unknown) == ([True, False], 1)
    assert fold.result()["zone"] == "yellow"  # from zone_exceptions when the block has no zone


def test_strategy_rows_pnl_drawdown_and_health() -> None:
    stats = [
        {
            "strategy": "s1",
            "portfolio": "alpha",
            "ts_ms": START + i,
            "bundles_submitted": 4,
            "bundles_included": 2,
            "bundles_reverted": 1,
            "gas_spent_usd": 1.0,
            "gross_pnl_usd": g,
            "net_pnl_usd": g - 1.0,
        }
        for i, g in enumerate([5.0, -10.0, 2.0, 8.0])
    ]
    stats.append({**stats[0], "strategy": "s2"})
    lives = lifecycles([alert("x", "firing", START, scope="strategy", entity="s2")], START, END)
    controls = [{"scope": "strategy:s1", "state": "HALTED", "ts_ms": START + 3}]
    rows = {r["strategy"]: r for r in strategy_rows(stats, lives, controls)}
    s1 = rows["s1"]
    assert (s1["net_pnl_usd"], s1["gross_pnl_usd"], s1["max_drawdown_usd"]) == (1.0, 5.0, 11.0)
    assert (s1["inclusion_rate"], s1["revert_rate"], s1["health"]) == (0.5, 0.25, "halted")
    assert (rows["s2"]["alerts"], rows["s2"]["health"], rows["s2"]["trading_state"]) == (
        1,
        "degraded",
        "ACTIVE",
    )


def test_stale_minutes_merge_overlapping_alerts_of_a_feed() -> None:
    lives = lifecycles(
        [
            alert("1", "firing", START, rule="StaleFeed", scope="source", entity="gas"),
            alert("1", "resolved", START + 120_000, rule="StaleFeed", scope="source", entity="gas"),
            alert("2", "firing", START + 60_000, rule="StaleFeed", scope="source", entity="gas"),
            alert("2", "resolved", START + 180_000, rule="StaleFeed", scope="source", entity="gas"),
            alert("3", "firing", END - 30_000, rule="StaleFeed", scope="source", entity="oracle"),
        ],
        START,
        END,
    )
    assert stale_minutes(lives, ["StaleFeed"], END) == {"gas": 3.0, "oracle": 0.5}


def test_dead_letters_of_the_day_by_reason_and_topic() -> None:
    dlq = [
        {"reason": r, "source_topic": t, "received_ts_ms": ts}
        for r, t, ts in [
            ("oversized", "mev.positions", START),
            ("oversized", "mev.market.ticks", END - 1),
            ("malformed_json", "mev.positions", START + 5),
            ("malformed_json", "mev.positions", END),
        ]
    ]
    d = dead_letters(dlq, START, END)
    assert d == {
        "total": 3,
        "by_reason": {"malformed_json": 1, "oversized": 2},
        "by_topic": {"mev.market.ticks": 1, "mev.positions": 2},
    }


def test_audit_section_names_a_tampered_chain_and_gives_heads() -> None:
    a, b = AuditChain("risk-p0"), AuditChain("risk")
    records = [a.append("alert", {"n": i}, START + i) for i in range(3)] + [
        b.append("control", {"x": 1}, START)
    ]
    good = audit_section(records, START, END)
    assert good["ok"] is True
    heads = {c["stream"]: (c["head_seq"], c["head_hash"], c["records"]) for c in good["chains"]}
    assert heads == {"risk-p0": (2, records[2]["hash"], 3), "risk": (0, records[3]["hash"], 1)}
    tampered = [*records[:1], {**records[1], "payload": {"n": 99}}, *records[2:]]
    bad = audit_section(tampered, START, END)
    broken = {c["stream"]: c for c in bad["chains"]}["risk-p0"]
    assert (bad["ok"], broken["ok"], broken["first_bad_seq"]) == (False, False, 1)


def _day_records() -> dict[str, list[dict[str, Any]]]:
    snaps = []
    for i in range(120):
        for p, scale in (("alpha", 1.0), ("beta", 0.1)):
            snaps.append(
                snapshot(
                    START + i * 60_000,
                    p,
                    total_exposure_usd=1e6 * scale + i,
                    net_exposure_usd=1e5,
                    var_95_usd=(15_000 if 30 <= i < 40 else 5_000) * scale,
                    var_99_usd=9e3,
                    es_95_usd=8e3,
                    es_99_usd=1e4,
                    max_concentration=0.3,
                    var_to_exposure=0.005,
                    late_ticks=i // 10,
                    positions_stale=0,
                    exposure_by_strategy={f"{p}-s": 1.0},
                    stress={"market_crash": {"pnl_usd": -1000.0 - i, "share_of_exposure": -0.1}},
                    backtest={
                        "observations": i,
                        "exceptions": i // 50,
                        "confidence": 0.99,
                        "zone": "green",
                        "zone_exceptions": i // 50,
                        "zone_observations": i,
                    },
                )
            )
    snaps.append(snapshot(END + 1, "alpha", var_95_usd=1e9))  # the next day: ignored
    alerts = [
        alert("a1", "firing", START + 1_800_000, rule="HighVaR95"),
        alert("a1", "acknowledged", START + 1_830_000, rule="HighVaR95", acknowledged_by="ops"),
        alert("s1", "firing", START + 10, scope="strategy", entity="beta-s", rule="RevertRateSpike"),
        alert("f1", "firing", START + 20, scope="source", entity="price-oracle", rule="StaleFeed"),
    ]
    controls = [
        {
            "scope": "strategy:beta-s",
            "command": "HALT",
            "state": "HALTED",
            "actor": "rule:R",
            "reason": "why",
            "ts_ms": START + 30,
        },
        {
            "scope": "global",
            "command": "HALT",
            "state": "HALTED",
            "actor": "ops",
            "reason": "drill",
            "ts_ms": START + 40,
        },
    ]
    chain = AuditChain("risk-p0")
    return {
        "snapshots": snaps,
        "alerts": alerts,
        "controls": controls,
        "audit": [chain.append("alert", {"n": 1}, START)],
        "dlq": [],
        "strategy_stats": [],
    }


def test_model_per_portfolio_and_firm_sections_follow_the_schema() -> None:
    model = build_model(_day_records(), "2025-12-01", options=ReportOptions(bar_ms=60_000))
    jsonschema.validate(model, SCHEMA, cls=jsonschema.Draft202012Validator)
    alpha, beta = model["portfolios"]
    assert (alpha["portfolio"], beta["portfolio"]) == ("alpha", "beta")
    assert alpha["figures"]["var_95_usd"]["max"] == 15_000  # the next day's 1e9 is not in
    assert [u["breach_count"] for u in alpha["limits"]] == [1, 0, 0]
    assert [u["breach_count"] for u in beta["limits"]] == [0, 0, 0]
    assert alpha["limits"][0]["breaches"][0]["duration_s"] == 600.0
    assert alpha["mttx"]["by_rule"]["HighVaR95"]["mtta_s"] == 30.0
    assert [a["id"] for a in beta["alerts"]] == ["s1"] and beta["controls"][0]["scope"] == "strategy:beta-s"
    assert [a["id"] for a in model["firm"]["alerts"]] == ["f1"]
    assert [c["scope"] for c in model["firm"]["controls"]] == ["global"]
    assert alpha["stress"]["worst"]["pnl_usd"] == -1119.0
    assert model["data_quality"]["late_events"]["late_ticks"] == 11
    assert alpha["backtest"]["day"]["exceptions"] == 2
    only = build_model(_day_records(), "2025-12-01", "beta")
    assert [p["portfolio"] for p in only["portfolios"]] == ["beta"]
    with pytest.raises(ReportError, match="gamma"):
        build_model(_day_records(), "2025-12-01", "gamma")
    with pytest.raises(ReportError, match="YYYY-MM-DD"):
        build_model(_day_records(), "01/12/2025")


def test_untrusted_records_do_not_break_the_model() -> None:
    records = _day_records()
    records["snapshots"] += [
        {"portfolio": "alpha"},
        {"ts_ms": "soon"},
        "not a dict",  # type: ignore[list-item]
        snapshot(START + 5, var_95_usd=float("nan"), backtest="x", stress=[1]),
    ]
    records["alerts"] += [
        {"id": "z", "transition": "firing", "ts_ms": "noon"},
        {"transition": "firing"},
        "junk",
    ]  # type: ignore[list-item]
    records["controls"] += [{"scope": "global", "ts_ms": None}, "junk"]  # type: ignore[list-item]
    records["dlq"] += [{"reason": "oversized", "received_ts_ms": "x"}, "junk"]  # type: ignore[list-item]
    model = build_model(records, "2025-12-01")
    assert model["portfolios"][0]["figures"]["var_95_usd"]["max"] == 15_000
    assert len(model["firm"]["alerts"]) == 1 and len(model["firm"]["controls"]) == 1
    assert model["data_quality"]["dead_letters"]["total"] == 0

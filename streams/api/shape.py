"""Response bodies of the read endpoints, built from snapshots and alert records (pure).

Field names keep the seed API's (SEED_NOTES.md) and add ours beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

SCENARIO_ALIASES = {"gas_price_spike": "gas_spike"}
"""The seed's stress scenario names -> ours."""
SEED_SEVERITY = {"LOW": "info", "MEDIUM": "warning", "HIGH": "high", "CRITICAL": "critical"}
ALERT_STATES = ("firing", "acknowledged", "silenced", "resolved")


def rfc3339(ts_ms: int) -> str:
    """
    >>> rfc3339(1_767_225_600_000)
    '2026-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def overview(snapshot: Mapping[str, Any], portfolios: list[str], unresolved: int,
             unresolved_here: int) -> dict[str, Any]:
    ts = int(snapshot.get("ts_ms", 0))
    return {
        "timestamp": rfc3339(ts), "ts_ms": ts,
        "portfolio": snapshot.get("portfolio"), "portfolios": portfolios,
        "portfolio_risk_rating": snapshot.get("rating"),
        "rating_score": snapshot.get("rating_score"),
        "rating_reasons": snapshot.get("rating_reasons", []),
        "total_exposure": snapshot.get("total_exposure_usd", 0.0),
        "net_exposure": snapshot.get("net_exposure_usd", 0.0),
        "var_95": snapshot.get("var_95_usd", 0.0),
        "var_99": snapshot.get("var_99_usd", 0.0),
        "expected_shortfall_95": snapshot.get("es_95_usd", 0.0),
        "expected_shortfall_99": snapshot.get("es_99_usd", 0.0),
        "max_concentration": snapshot.get("max_concentration", 0.0),
        "correlation_risk": snapshot.get("correlation_risk", 0.0),
        "active_positions": snapshot.get("active_positions", 0),
        "alerts": unresolved,
        "portfolio_alerts": unresolved_here,
        "worst_stress_scenario": snapshot.get("worst_stress_scenario"),
    }


def firm_overview(firm: Mapping[str, Any], snapshots: Mapping[str, Mapping[str, Any]], unresolved: int,
                  unresolved_by_portfolio: Mapping[str, int]) -> dict[str, Any]:
    """``GET /api/v1/risk/overview`` without ``?portfolio=``: the firm (``RiskEngine.firm``) under
    the seed's names, and every portfolio's own overview in ``per_portfolio`` (with its stand-alone
    VaR over the same scenarios the firm's is read from)."""
    ts = max((int(s.get("ts_ms", 0)) for s in snapshots.values()), default=0)
    portfolios = sorted(snapshots)
    rows = []
    for name in portfolios:
        row = overview(snapshots[name], portfolios, unresolved, unresolved_by_portfolio.get(name, 0))
        row.pop("portfolios")
        rows.append({**row, "standalone": (firm.get("standalone") or {}).get(name)})
    return {
        "scope": "firm", "portfolio": None, "portfolios": portfolios,
        "timestamp": rfc3339(ts), "ts_ms": ts,
        "portfolio_risk_rating": firm["rating"], "rating_score": firm["rating_score"],
        "rating_reasons": firm["rating_reasons"],
        "total_exposure": firm["total_exposure_usd"], "net_exposure": firm["net_exposure_usd"],
        "var_95": firm["var_95_usd"], "var_99": firm["var_99_usd"],
        "expected_shortfall_95": firm["es_95_usd"], "expected_shortfall_99": firm["es_99_usd"],
        "sum_of_var_95": firm["sum_of_var_95_usd"], "sum_of_var_99": firm["sum_of_var_99_usd"],
        "diversification_95": firm["diversification_95_usd"],
        "diversification_99": firm["diversification_99_usd"],
        "var_method": "historical simulation of the joint P&L vector (sum of the portfolios' scenario "
                      "P&L), not a sum of VaRs",
        "n_scenarios": firm["n_scenarios"],
        "max_concentration": firm["max_concentration"], "hhi": firm["hhi"],
        "correlation_risk": firm["correlation_risk"],
        "active_positions": firm["active_positions"],
        "alerts": unresolved,
        "per_portfolio": rows,
    }


def positions(snapshot: Mapping[str, Any], portfolios: list[str]) -> dict[str, Any]:
    """Positions sorted by component VaR 99 (largest risk first)."""
    rows = []
    for p in snapshot.get("positions") or []:
        risk = float(p.get("risk_amount_usd", 0.0))
        rows.append({**p, "risk_amount": risk, "exposure": p.get("exposure_usd", 0.0),
                     "component_var_99": risk})
    rows.sort(key=lambda r: (-r["risk_amount"], str(r.get("id"))))
    ts = int(snapshot.get("ts_ms", 0))
    return {"portfolio": snapshot.get("portfolio"), "portfolios": portfolios, "positions": rows,
            "total_positions": len(rows), "total_exposure": snapshot.get("total_exposure_usd", 0.0),
            "timestamp": rfc3339(ts), "ts_ms": ts}


def var(snapshot: Mapping[str, Any], portfolios: list[str],
        history: list[dict[str, Any]]) -> dict[str, Any]:
    ts = int(snapshot.get("ts_ms", 0))
    return {
        "portfolio": snapshot.get("portfolio"), "portfolios": portfolios,
        "var_95": snapshot.get("var_95_usd", 0.0), "var_99": snapshot.get("var_99_usd", 0.0),
        "expected_shortfall_95": snapshot.get("es_95_usd", 0.0),
        "expected_shortfall_975": snapshot.get("es_975_usd", 0.0),
        "expected_shortfall_99": snapshot.get("es_99_usd", 0.0),
        "parametric_var_95": snapshot.get("parametric_var_95_usd", 0.0),
        "parametric_var_99": snapshot.get("parametric_var_99_usd", 0.0),
        "liquidity_adjusted_var_99": snapshot.get("liquidity_adjusted_var_99_usd", 0.0),
        "var_99_horizon": snapshot.get("var_99_horizon_usd", 0.0),
        "horizon_bars": snapshot.get("horizon_bars"),
        "n_scenarios": snapshot.get("n_scenarios", 0),
        "confidence_level": "historical simulation (parametric EWMA alongside)",
        "backtest": snapshot.get("backtest"),
        "history": history,
        "timestamp": rfc3339(ts), "ts_ms": ts,
    }


def stress(snapshot: Mapping[str, Any], portfolios: list[str]) -> dict[str, Any]:
    """Seed names per scenario: ``total_impact`` = scenario P&L in USD (negative = loss),
    ``impact_percentage`` = P&L / gross exposure, a fraction as in the seed (``impact_percent``
    the same x 100); ours (``pnl_usd``, ...) beside them. The gas scenario is listed under the
    seed's name ``gas_price_spike`` too (``alias_of``)."""
    ts = int(snapshot.get("ts_ms", 0))
    tests = {name: {**r, "total_impact": r.get("pnl_usd", 0.0),
                    "impact_percentage": float(r.get("share_of_exposure", 0.0)),
                    "impact_percent": 100.0 * float(r.get("share_of_exposure", 0.0)),
                    "position_impacts": r.get("position_impacts", {})}
             for name, r in (snapshot.get("stress") or {}).items()}
    for seed_name, ours in SCENARIO_ALIASES.items():
        if ours in tests and seed_name not in tests:
            tests[seed_name] = {**tests[ours], "alias_of": ours}
    return {"portfolio": snapshot.get("portfolio"), "portfolios": portfolios,
            "stress_tests": tests,
            "worst_scenario": snapshot.get("worst_stress_scenario"),
            "timestamp": rfc3339(ts), "ts_ms": ts}


def predictions(snapshot: Mapping[str, Any]) -> dict[str, Any] | None:
    """Seed-shaped predictions from ``snapshot["anomaly"]`` (the online models' block); None
    when the snapshot carries none. The models' own seed blocks are used as they are."""
    anomaly = snapshot.get("anomaly")
    if not isinstance(anomaly, Mapping):
        return None
    score = float(anomaly.get("portfolio_score", anomaly.get("score", 0.0)) or 0.0)
    detection = anomaly.get("anomaly_detection")
    if not isinstance(detection, Mapping):
        flagged = anomaly.get("portfolio_is_anomaly", anomaly.get("is_anomaly"))
        warm = anomaly.get("portfolio_warm", anomaly.get("is_warm", True))
        detection = {"is_anomaly": bool(score >= 0.5 if flagged is None else flagged), "anomaly_score": score,
                     "confidence": 1.0 if warm else 0.0, "risk_level": snapshot.get("rating")}
    classification = anomaly.get("risk_classification")
    if not isinstance(classification, Mapping):
        classification = {"predicted_risk_level": snapshot.get("rating"), "probability": None,
                          "confidence": None, "all_probabilities": {}, "source": "rating"}
    ts = int(snapshot.get("ts_ms", 0))
    return {
        "portfolio": snapshot.get("portfolio"),
        "anomaly_detection": dict(detection),
        "risk_classification": dict(classification),
        "alert_forecast": {"probability": anomaly.get("alert_probability"),
                           "horizon_ms": anomaly.get("alert_horizon_ms"),
                           "warm": anomaly.get("forecaster_warm")},
        "var_forecast": anomaly.get("var_forecast"),
        "top_feature": anomaly.get("top_feature"),
        "timestamp": rfc3339(ts), "ts_ms": ts,
    }


# ---- alerts ------------------------------------------------------------------------
def alert_state(record: Mapping[str, Any]) -> str:
    """One word for the dashboard: resolved, acknowledged, silenced or firing."""
    if record.get("status") == "resolved" or record.get("resolved"):
        return "resolved"
    if record.get("acknowledged"):
        return "acknowledged"
    if record.get("silenced") or record.get("inhibited"):
        return "silenced"
    return str(record.get("status") or "firing")


def alert_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["state"] = alert_state(record)
    row["portfolio"] = (record.get("labels") or {}).get("portfolio") or \
        (record.get("values") or {}).get("portfolio")
    return row


def merge_alerts(current: Iterable[Mapping[str, Any]],
                 recent: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Current alert states (authoritative) plus recently seen ones not current any more
    (resolved here, or owned by another worker)."""
    rows = {str(r.get("id") or r.get("fingerprint")): alert_row(r) for r in recent}
    for r in current:
        rows[str(r.get("id") or r.get("fingerprint"))] = alert_row(r)
    return list(rows.values())


def notifications_sent(rows: list[dict[str, Any]], deliveries: Iterable[Mapping[str, Any]]
                       ) -> list[dict[str, Any]]:
    """Add the seed's ``notifications_sent`` to each alert row: the channels that delivered a
    notification of it (``delivered`` outcomes on ``risk.audit``, any worker's), sorted.

    >>> rows = notifications_sent([{"id": "a1"}, {"id": "a2"}],
    ...     [{"alert_ids": ["a1"], "channel": "slack", "outcome": "delivered"},
    ...      {"alert_ids": ["a1"], "channel": "email", "outcome": "failed"},
    ...      {"alert_ids": ["a1", "a2"], "channel": "email", "outcome": "delivered"}])
    >>> [r["notifications_sent"] for r in rows]
    [['email', 'slack'], ['email']]
    """
    sent: dict[str, set[str]] = {}
    for d in deliveries:
        if d.get("outcome") == "delivered" and isinstance(d.get("channel"), str):
            for alert in d.get("alert_ids") or ():
                sent.setdefault(str(alert), set()).add(d["channel"])
    for r in rows:
        r["notifications_sent"] = sorted(sent.get(str(r.get("id")), ()))
    return rows


def parse_severity(value: str) -> str:
    """
    >>> parse_severity("HIGH"), parse_severity("warning")
    ('high', 'warning')
    """
    return SEED_SEVERITY.get(value.upper(), value.lower())


def filter_alerts(rows: list[dict[str, Any]], *, severity: str | None, state: str | None,
                  portfolio: str | None, unresolved_only: bool, limit: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if severity and r.get("severity") != parse_severity(severity):
            continue
        if state and r["state"] != state:
            continue
        if portfolio and r.get("portfolio") != portfolio:
            continue
        if unresolved_only and r["state"] == "resolved":
            continue
        out.append(r)
    out.sort(key=lambda r: (str(r.get("startsAt", "")), int(r.get("ts_ms", 0)), str(r.get("id"))),
             reverse=True)
    return out[:limit]


def rule_row(rule: Any, errors: Mapping[str, int], last_error: Mapping[str, str]) -> dict[str, Any]:
    """A rule as the API lists it, seed names (condition, cooldown_minutes, message) included."""
    return {
        "name": rule.name, "scope": rule.scope, "expr": rule.expr, "condition": rule.expr,
        "for_ms": rule.for_ms, "keep_firing_for_ms": rule.keep_firing_for_ms,
        "severity": rule.severity, "labels": dict(rule.labels),
        "annotations": dict(rule.annotations), "message": rule.annotations.get("summary", ""),
        "cooldown_ms": rule.cooldown_ms, "cooldown_minutes": rule.cooldown_ms / 60_000,
        "channels": list(rule.channels),
        "escalate": [{"after_ms": s.after_ms, "severity": s.severity, "channels": list(s.channels)}
                     for s in rule.escalate],
        "action": rule.action.to_dict() if rule.action else None,
        "definition_hash": rule.definition_hash,
        "eval_errors": errors.get(rule.name, 0), "last_error": last_error.get(rule.name),
    }


# ---- notification deliveries -----------------------------------------------------------
def delivery_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One delivery outcome (``OutcomeRecord.to_dict()``) with RFC 3339 times added."""
    row = dict(record)
    row["timestamp"] = rfc3339(int(record.get("ts_ms") or 0))
    row["event_timestamp"] = rfc3339(int(record.get("event_ts_ms") or 0))
    return row


def filter_deliveries(records: Iterable[Mapping[str, Any]], *, channel: str | None, outcome: str | None,
                      alert_id: str | None, fingerprint: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first (wall time of the record, then arrival); ``alert_id`` matches an alert id or
    a fingerprint, ``fingerprint`` only fingerprints.

    >>> recs = [{"channel": "webhook", "outcome": "failed", "alert_ids": ["a1"], "fingerprints": ["f1"],
    ...          "ts_ms": 1}, {"channel": "webhook", "outcome": "delivered", "alert_ids": ["a1"],
    ...          "fingerprints": ["f1"], "ts_ms": 2}]
    >>> [r["outcome"] for r in filter_deliveries(recs, channel="webhook", outcome=None,
    ...                                          alert_id="f1", fingerprint=None, limit=5)]
    ['delivered', 'failed']
    """
    ordered = sorted(enumerate(records), key=lambda ir: (int(ir[1].get("ts_ms") or 0), ir[0]), reverse=True)
    out = []
    for _, r in ordered:
        if channel and r.get("channel") != channel:
            continue
        if outcome and r.get("outcome") != outcome:
            continue
        if alert_id and alert_id not in (*(r.get("alert_ids") or ()), *(r.get("fingerprints") or ())):
            continue
        if fingerprint and fingerprint not in (r.get("fingerprints") or ()):
            continue
        out.append(delivery_row(r))
        if len(out) >= limit:
            break
    return out

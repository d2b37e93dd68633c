"""Response bodies of the seed dashboard's unversioned API (``/api/risk-overview``, ``/api/positions``,
``/api/alerts``, ``/api/var-data``, ``/api/stress-tests``), with the seed's field names and units
(SEED_NOTES.md; what differs from the seed is listed in ``docs/seed-compatibility.md``). Pure.

Units: money in USD; ``risk_percentage`` and ``impact_percentage`` are fractions (0.05 = 5 %);
times are RFC 3339 strings (``last_update``, ``timestamp``) beside ``ts_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.api.shape import SCENARIO_ALIASES, rfc3339

SEED_SCENARIO_NAMES = {ours: seed for seed, ours in SCENARIO_ALIASES.items()}
HIGH_RISK, MEDIUM_RISK = 0.05, 0.02
"""The seed dashboard's position risk levels: risk_percentage above 0.05 HIGH, above 0.02 MEDIUM."""
TREND_POINTS = 50
DEFAULT_ALERTS = 10
NO_DATA = {"status": "no_data"}


def scenario_name(name: str) -> str:
    """Our name of a stress scenario given ours or the seed's.

    >>> scenario_name("gas_price_spike"), scenario_name("market_crash")
    ('gas_spike', 'market_crash')
    """
    return SCENARIO_ALIASES.get(name, name)


def risk_level(fraction: float) -> str:
    """
    >>> risk_level(0.06), risk_level(0.05), risk_level(0.021), risk_level(0.0)
    ('HIGH', 'MEDIUM', 'MEDIUM', 'LOW')
    """
    return "HIGH" if fraction > HIGH_RISK else "MEDIUM" if fraction > MEDIUM_RISK else "LOW"


TREND_FIELDS = {"var_95": "var_95_usd", "var_99": "var_99_usd", "total_exposure": "total_exposure_usd",
                "risk_rating": "rating", "expected_shortfall_99": "es_99_usd"}
"""Seed trend field -> VaR history field (``streams.api.hub.history_point``)."""


def _trend(history: Iterable[Mapping[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The latest ``TREND_POINTS`` history points, oldest first, under the seed's names."""
    points = list(history)[-TREND_POINTS:]
    return [{"timestamp": rfc3339(int(p.get("ts_ms", 0))), "ts_ms": int(p.get("ts_ms", 0)),
             **{f: p.get(TREND_FIELDS[f]) for f in fields}} for p in points]


def risk_overview(snapshot: Mapping[str, Any], unresolved: int,
                  history: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``GET /api/risk-overview``: ``risk_trend`` lists the recent snapshots' rating, exposure and
    VaR 95, oldest first (at most 50 points)."""
    ts = int(snapshot.get("ts_ms", 0))
    return {
        "risk_rating": snapshot.get("rating"),
        "total_exposure": snapshot.get("total_exposure_usd", 0.0),
        "var_95": snapshot.get("var_95_usd", 0.0),
        "var_99": snapshot.get("var_99_usd", 0.0),
        "max_concentration": snapshot.get("max_concentration", 0.0),
        "correlation_risk": snapshot.get("correlation_risk", 0.0),
        "last_update": rfc3339(ts),
        "active_alerts": unresolved,
        "risk_trend": _trend(history, ("risk_rating", "total_exposure", "var_95")),
        "portfolio": snapshot.get("portfolio"), "ts_ms": ts,
    }


def positions(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /api/positions``: largest risk first; ``risk_percentage`` = component VaR 99 / gross
    exposure, a fraction."""
    gross = float(snapshot.get("total_exposure_usd", 0.0) or 0.0)
    rows = []
    for p in snapshot.get("positions") or []:
        risk = float(p.get("risk_amount_usd", 0.0))
        fraction = risk / gross if gross > 0 else 0.0
        rows.append({"id": p.get("id"), "type": p.get("type"), "risk_amount": risk,
                     "risk_percentage": fraction, "exposure": p.get("exposure_usd", 0.0),
                     "risk_level": risk_level(fraction), "strategy": p.get("strategy"),
                     "asset": p.get("asset")})
    rows.sort(key=lambda r: (-r["risk_amount"], str(r["id"])))
    ts = int(snapshot.get("ts_ms", 0))
    return {"positions": rows, "total_positions": len(rows),
            "high_risk_positions": sum(1 for r in rows if r["risk_level"] == "HIGH"),
            "last_update": rfc3339(ts), "portfolio": snapshot.get("portfolio"), "ts_ms": ts}


def alerts(rows: list[dict[str, Any]], limit: int = DEFAULT_ALERTS) -> dict[str, Any]:
    """``GET /api/alerts``: the newest ``limit`` alerts (``rows`` as ``shape.filter_alerts`` orders
    them, newest first); ``total_alerts`` and ``unresolved_alerts`` count every alert in ``rows``."""
    return {"alerts": rows[:limit], "total_alerts": len(rows),
            "unresolved_alerts": sum(1 for r in rows if r.get("state") != "resolved")}


def var_data(snapshot: Mapping[str, Any], history: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``GET /api/var-data``: ``var_trend`` lists the recent VaR 95/99 and ES 99, oldest first."""
    ts = int(snapshot.get("ts_ms", 0))
    return {
        "var_95": snapshot.get("var_95_usd", 0.0), "var_99": snapshot.get("var_99_usd", 0.0),
        "expected_shortfall_95": snapshot.get("es_95_usd", 0.0),
        "expected_shortfall_99": snapshot.get("es_99_usd", 0.0),
        "confidence_level": "historical simulation",
        "var_trend": _trend(history, ("var_95", "var_99", "expected_shortfall_99")),
        "last_update": rfc3339(ts), "portfolio": snapshot.get("portfolio"), "ts_ms": ts,
    }


def stress_tests(snapshot: Mapping[str, Any], descriptions: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/stress-tests``: per scenario (seed names: ``gas_price_spike``), ``total_impact`` =
    scenario P&L in USD (negative = loss), ``impact_percentage`` = P&L / gross exposure (a
    fraction), ``worst_position`` = id of the position losing most."""
    scenarios = {}
    for name, r in (snapshot.get("stress") or {}).items():
        worst = r.get("worst_position")
        scenarios[SEED_SCENARIO_NAMES.get(name, name)] = {
            "total_impact": r.get("pnl_usd", 0.0),
            "impact_percentage": float(r.get("share_of_exposure", 0.0)),
            "worst_position": worst.get("position_id") if isinstance(worst, Mapping) else None,
            "scenario_description": descriptions.get(name, ""),
        }
    worst_name = snapshot.get("worst_stress_scenario")
    ts = int(snapshot.get("ts_ms", 0))
    most = SEED_SCENARIO_NAMES.get(worst_name, worst_name) if worst_name else None
    return {"scenarios": scenarios, "most_dangerous_scenario": most,
            "last_update": rfc3339(ts), "portfolio": snapshot.get("portfolio"), "ts_ms": ts}

"""The firm view: ``GET /api/v1/risk/overview`` without ``?portfolio=`` over the real pure pipeline,
its VaR/ES recomputed here from the shared scenarios and the portfolios' exposures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.api.conftest import BEARER, FakeHost

VIEWER = BEARER["viewer"]
SEED_OVERVIEW = {"timestamp", "portfolio_risk_rating", "total_exposure", "var_95", "var_99",
                 "max_concentration", "correlation_risk", "active_positions", "alerts"}


def _tail(pnl: list[float], confidence: float) -> tuple[float, float]:
    ordered = sorted(pnl)
    k = min(len(ordered), max(1, math.ceil(round(len(ordered) * (1 - confidence), 9))))
    return -ordered[k - 1], -sum(ordered[:k]) / k


async def test_firm_overview_aggregates_the_joint_pnl(client, host: FakeHost) -> None:
    resp = await client.get("/api/v1/risk/overview", headers=VIEWER)
    assert resp.status == 200, await resp.text()
    firm = await resp.json()
    assert set(firm) >= SEED_OVERVIEW and firm["scope"] == "firm" and firm["portfolio"] is None
    snaps = host.pipeline.latest_snapshots
    assert firm["portfolios"] == sorted(snaps) == ["alpha", "beta"]
    assert firm["total_exposure"] == pytest.approx(sum(s["total_exposure_usd"] for s in snaps.values()))
    assert firm["active_positions"] == sum(s["active_positions"] for s in snaps.values())
    assert firm["alerts"] == len(host.pipeline.alerts.alerts())

    # the joint P&L per scenario, from the engine's scenario returns and the summed exposures
    risk = host.pipeline.risk
    names = risk.assets.names
    returns = risk.window.scenarios(len(names))
    joint = np.zeros(returns.shape[0])
    alone = {}
    for name, snap in snaps.items():
        e = np.array([snap["exposure_by_asset"].get(a, 0.0) for a in names])
        alone[name] = [float(x) for x in returns @ e]
        joint += returns @ e
    assert firm["n_scenarios"] == returns.shape[0] > 0
    for conf, var_key, es_key in ((0.95, "var_95", "expected_shortfall_95"),
                                  (0.99, "var_99", "expected_shortfall_99")):
        var, es = _tail([float(x) for x in joint], conf)
        assert firm[var_key] == pytest.approx(var, rel=1e-9) and firm[es_key] == pytest.approx(es, rel=1e-9)
        total_alone = sum(_tail(v, conf)[0] for v in alone.values())
        assert firm[f"sum_of_var_{var_key[-2:]}"] == pytest.approx(total_alone, rel=1e-9)
        assert firm[f"diversification_{var_key[-2:]}"] == pytest.approx(total_alone - var, rel=1e-9, abs=1e-6)

    rows = {r["portfolio"]: r for r in firm["per_portfolio"]}
    assert set(rows) == set(snaps)
    for name, row in rows.items():
        assert row["var_99"] == snaps[name]["var_99_usd"]
        assert row["portfolio_risk_rating"] == snaps[name]["rating"]
        # stand-alone over the same scenarios: the portfolio's own VaR (its snapshot is at the watermark)
        assert row["standalone"]["var_99_usd"] == pytest.approx(snaps[name]["var_99_usd"], rel=1e-9)
    assert sum(r["portfolio_alerts"] for r in rows.values()) <= firm["alerts"]

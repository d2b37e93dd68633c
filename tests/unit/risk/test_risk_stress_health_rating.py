"""Stress scenarios, strategy health and the rating."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.risk import stress as st
from agents.risk.config import DEFAULT_GAS_COST_SHARE, RatingThresholds, load_risk_config
from agents.risk.errors import RiskConfigError, RiskInputError
from agents.risk.health import StrategyHealth
from agents.risk.rating import Rating, rate
from agents.risk.var import exit_cost_usd

ROOT = Path(__file__).resolve().parents[3]
SCEN = ROOT / "deploy" / "config" / "scenarios.yaml"


def inputs(cov: np.ndarray | None = None) -> st.StressInputs:
    # legs: p0 long ETH 10k (liquidation), p1 short ETH 4k (arbitrage),
    #       p2 long USDC 5k (sandwich), p3 long BTC 20k (sandwich)
    names = ["ETH", "USDC", "BTC"]
    leg_asset = np.array([0, 0, 1, 2])
    leg_exp = np.array([10_000.0, -4_000.0, 5_000.0, 20_000.0])
    e = np.bincount(leg_asset, weights=leg_exp, minlength=3)
    if cov is None:
        sd = np.array([0.02, 0.001, 0.03])
        cov = np.diag(sd**2)
    return st.StressInputs(
        asset_names=names, asset_exposure=e, leg_asset=leg_asset, leg_exposure=leg_exp,
        leg_slot=np.arange(4), leg_active=np.ones(4, bool),
        leg_kind=["liquidation", "arbitrage", "sandwich", "sandwich"],
        slot_ids=["p0", "p1", "p2", "p3"], cov=cov, spread_bps=np.array([10.0, 2.0, 20.0]),
        depth_usd=np.array([5_000.0, np.nan, 1e6]), gross_usd=float(np.abs(leg_exp).sum()),
        stablecoins=("USDC", "USDT", "DAI"), gas_cost_share=dict(DEFAULT_GAS_COST_SHARE))


def test_seed_scenarios_load() -> None:
    names = [s.name for s in st.load_scenarios(SCEN)]
    assert names == ["market_crash", "liquidity_crisis", "correlation_spike", "gas_spike",
                     "stablecoin_depeg"]


def test_market_crash_and_depeg() -> None:
    scs = {s.name: s for s in st.load_scenarios(SCEN)}
    inp = inputs()
    crash = st.run_scenario(scs["market_crash"], inp)
    assert crash["pnl_usd"] == pytest.approx(-0.2 * (10_000 - 4_000 + 20_000))
    assert crash["share_of_exposure"] == pytest.approx(crash["pnl_usd"] / 39_000)
    assert crash["worst_position"] == {"position_id": "p3", "pnl_usd": pytest.approx(-4000)}
    assert crash["position_impacts"] == {"p3": pytest.approx(-4000), "p0": pytest.approx(-2000),
                                         "p2": 0.0, "p1": pytest.approx(800)}
    sd3 = np.sqrt(np.diag(inp.cov)) * 3
    ref = 2.3263478740408408 * math.sqrt(float((inp.asset_exposure * sd3) @ (inp.asset_exposure
                                                                            * sd3)))
    assert crash["stressed_var_99_usd"] == pytest.approx(ref, rel=1e-9)
    depeg = st.run_scenario(scs["stablecoin_depeg"], inp)
    assert depeg["pnl_usd"] == pytest.approx(-0.05 * 5_000)
    assert depeg["worst_position"]["position_id"] == "p2"


def test_liquidity_crisis_is_stressed_exit_cost() -> None:
    sc = st.scenario_from_dict("lc", {"depth_multiplier": 0.5, "spread_multiplier": 2.0})
    inp = inputs()
    res = st.run_scenario(sc, inp)
    ref = exit_cost_usd(inp.asset_exposure, inp.spread_bps * 2, inp.depth_usd * 0.5).sum()
    assert res["pnl_usd"] == pytest.approx(-ref)
    assert res["pnl_usd"] < 0


def test_gas_spike_hits_only_gas_paying_kinds() -> None:
    sc = st.scenario_from_dict("gas", {"gas_multiplier": 5.0,
                                       "gas_kinds": ["liquidation", "sandwich"]})
    res = st.run_scenario(sc, inputs())
    share = DEFAULT_GAS_COST_SHARE
    ref = -4 * (10_000 * share["liquidation"] + 25_000 * share["sandwich"])
    assert res["pnl_usd"] == pytest.approx(ref)
    assert res["worst_position"]["position_id"] == "p3"


def test_correlation_spike_uses_stressed_covariance() -> None:
    inp = inputs()
    sc = next(s for s in st.load_scenarios(SCEN) if s.name == "correlation_spike")
    res = st.run_scenario(sc, inp)
    sd = np.sqrt(np.diag(inp.cov))
    corr = np.full((3, 3), 0.95)
    np.fill_diagonal(corr, 1.0)
    sigma = math.sqrt(inp.asset_exposure @ (corr * np.outer(sd, sd)) @ inp.asset_exposure)
    assert res["stressed_var_99_usd"] == pytest.approx(2.3263478740408408 * sigma, rel=1e-9)
    assert res["pnl_usd"] == pytest.approx(-res["stressed_var_99_usd"], rel=1e-9)


def test_run_all_names_most_dangerous_and_custom_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("scenarios:\n  eth_halves:\n    price_shocks: {ETH: -0.5}\n"
                 "  mild:\n    price_shocks: {'*': -0.01}\n")
    res, worst = st.run_all(st.load_scenarios(f), inputs())
    assert res["eth_halves"]["pnl_usd"] == pytest.approx(-3000)
    assert worst == "eth_halves"
    f.write_text("scenarios:\n  bad:\n    price_shock: {ETH: -0.5}\n")
    with pytest.raises(RiskConfigError):
        st.load_scenarios(f)


def test_health_window_metrics() -> None:
    h = StrategyHealth(window_ms=3_000, step_ms=1_000)
    nets = [10.0, -30.0, 5.0, 40.0]
    for i, net in enumerate(nets):
        h.add({"strategy": "s", "portfolio": "pf", "chain": "eth", "ts_ms": 1_000 * (i + 1),
               "interval_ms": 1_000, "bundles_submitted": 10, "bundles_included": 7,
               "bundles_reverted": 1, "gas_spent_usd": 2.0, "gross_pnl_usd": 20.0,
               "net_pnl_usd": net})
    got = h.health("s", 4_000)  # window (1000, 4000]: the last three records
    assert got["intervals"] == 3
    assert got["inclusion_rate"] == pytest.approx(0.7)
    assert got["revert_rate"] == pytest.approx(0.1)
    assert got["gas_to_gross"] == pytest.approx(6 / 60)
    assert got["net_pnl_usd"] == pytest.approx(15.0)
    assert got["drawdown_usd"] == pytest.approx(30.0)  # peak 0, trough -30
    assert got["win_rate"] == pytest.approx(2 / 3)
    # a replayed record replaces, not doubles
    h.add({"strategy": "s", "portfolio": "pf", "chain": "eth", "ts_ms": 4_000,
           "bundles_submitted": 10, "bundles_included": 7, "bundles_reverted": 1,
           "gas_spent_usd": 2.0, "gross_pnl_usd": 20.0, "net_pnl_usd": 40.0})
    assert h.health("s", 4_000)["net_pnl_usd"] == pytest.approx(15.0)
    with pytest.raises(RiskInputError):
        h.add({"strategy": "s", "ts_ms": 1, "bundles_submitted": 1, "bundles_included": 2})


def test_rating_bands_and_critical() -> None:
    t = RatingThresholds()
    assert rate(0, 0, 0, 0, 0, t)[0] is Rating.LOW
    # concentration high (0.3) + correlation high (0.3) + total risk 0.4*0.5 = 0.8 -> HIGH
    r, score, reasons = rate(500, 600, 10_000, 0.6, 0.8, t)
    assert r is Rating.HIGH and score == pytest.approx(0.8) and reasons
    assert rate(1_000, 1_400, 10_000, 0.6, 0.8, t)[0] is Rating.CRITICAL  # score 1.0
    assert rate(10, 2_000, 10_000, 0.0, 0.0, t)[0] is Rating.CRITICAL  # VaR99 20 % of gross
    assert rate(500, 600, 10_000, 0.4, 0.6, t)[0] is Rating.MEDIUM  # 0.2 + 0.15 + 0.15
    assert rate(100, 200, 10_000, 0.4, 0.6, t)[0] is Rating.LOW  # 0.04 + 0.15 + 0.15


def test_repo_risk_yaml_parses() -> None:
    cfg = load_risk_config(ROOT / "deploy" / "config" / "risk.yaml")
    assert cfg.kind_weights["sandwich"] == 1.5 and cfg.rating.high == 0.7

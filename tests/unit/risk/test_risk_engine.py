"""RiskEngine facade: snapshot contents, determinism, incremental path, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.risk import var as varlib
from agents.risk.config import RiskConfig
from agents.risk.engine import RiskEngine
from agents.risk.errors import RiskInputError
from agents.risk.stress import load_scenarios

ROOT = Path(__file__).resolve().parents[3]
ASSETS = ("ETH", "WBTC", "USDC")
KINDS = ("arbitrage", "liquidation", "sandwich", "frontrun")

SNAPSHOT_KEYS = {
    "portfolio", "ts_ms", "total_exposure_usd", "net_exposure_usd", "active_positions",
    "exposure_by_asset", "exposure_by_strategy", "exposure_by_kind", "exposure_by_protocol",
    "exposure_by_chain", "max_concentration", "hhi", "var_95_usd", "var_99_usd", "es_95_usd",
    "es_975_usd", "es_99_usd", "parametric_var_95_usd", "parametric_var_99_usd",
    "liquidity_adjusted_var_99_usd", "var_to_exposure", "component_var_99", "marginal_var_99",
    "correlation_risk", "volatility", "n_scenarios", "stress", "worst_stress_scenario",
    "rating", "rating_score", "backtest", "positions", "market"}


def stream(n_bars: int = 160, seed: int = 3) -> list[tuple[str, dict]]:
    """A deterministic mixed input stream: ticks, positions, stats, watermarks."""
    rng = np.random.default_rng(seed)
    price = {"ETH": 3000.0, "WBTC": 60000.0, "USDC": 1.0}
    out: list[tuple[str, dict]] = []
    for b in range(n_bars):
        t = 10_000 + b * 1000
        for a in ASSETS:
            price[a] *= math.exp(rng.normal(0, 0.0005 if a == "USDC" else 0.01))
            out.append(("tick", {"kind": "price", "source": "oracle", "asset": a, "ts_ms": t + 5,
                                 "price_usd": price[a]}))
        out.append(("tick", {"kind": "gas", "chain": "ethereum", "ts_ms": t + 7,
                             "base_fee_gwei": 20.0 + b % 9, "priority_fee_gwei": 1.5}))
        if b % 20 == 0:
            out.append(("tick", {"kind": "liquidity", "asset": "ETH", "pool": "uni", "ts_ms": t,
                                 "depth_usd": 2e5, "spread_bps": 4.0}))
        if b % 10 == 5:
            i = b // 10
            out.append(("pos", {"position_id": f"p{i % 6}", "seq": b, "action": "open",
                                "portfolio": "pf", "strategy": f"s{i % 2}",
                                "kind": KINDS[i % 4], "chain": "ethereum", "protocol": "uni",
                                "asset": ASSETS[i % 2], "quantity": float(1 + i % 3),
                                "notional_usd": 1000.0, "entry_price_usd": 1000.0,
                                "ts_ms": t}))
            out.append(("stats", {"strategy": f"s{i % 2}", "portfolio": "pf",
                                  "chain": "ethereum", "ts_ms": t, "interval_ms": 10_000,
                                  "bundles_submitted": 10, "bundles_included": 6,
                                  "bundles_reverted": 1, "gas_spent_usd": 3.0,
                                  "gross_pnl_usd": 12.0, "net_pnl_usd": float(9 - i % 4 * 4)}))
        out.append(("wm", {"ts_ms": t}))
    return out


def run(events: list[tuple[str, dict]], engine: RiskEngine | None = None) -> RiskEngine:
    eng = engine or RiskEngine(RiskConfig(bar_ms=1000, window_bars=120),
                               load_scenarios(ROOT / "deploy/config/scenarios.yaml"),
                               backtest_min_scenarios=20)
    for kind, rec in events:
        if kind == "tick":
            eng.on_tick(rec)
        elif kind == "pos":
            eng.on_position(rec)
        elif kind == "stats":
            eng.on_strategy_stats(rec)
        else:
            eng.advance(rec["ts_ms"])
    return eng


@pytest.fixture(scope="module")
def engine() -> RiskEngine:
    return run(stream())


def test_snapshot_has_contract_keys_and_is_json(engine: RiskEngine) -> None:
    snap = engine.snapshot("pf", 999)
    assert set(snap) >= SNAPSHOT_KEYS
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap
    assert snap["n_scenarios"] == 120 and snap["active_positions"] == 6
    assert snap["es_99_usd"] >= snap["var_99_usd"] >= snap["var_95_usd"] > 0
    assert snap["es_975_usd"] >= snap["var_95_usd"]
    assert sum(snap["component_var_99"].values()) == pytest.approx(snap["var_99_usd"])
    assert sum(p["risk_amount_usd"] for p in snap["positions"]) == pytest.approx(
        snap["var_99_usd"])
    assert set(snap["stress"]) == {"market_crash", "liquidity_crisis", "correlation_spike",
                                   "gas_spike", "stablecoin_depeg"}
    assert snap["worst_stress_scenario"] == "market_crash"
    assert snap["rating"] in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert snap["backtest"]["observations"] > 50
    gas = snap["market"]["gas_gwei"]["ethereum"]
    assert gas["max"] >= gas["p95"] >= gas["mean"] > 0
    assert snap["liquidity_adjusted_var_99_usd"] > snap["var_99_usd"]
    assert {"id", "type", "risk_amount_usd", "risk_percentage", "exposure_usd",
            "confidence"} <= set(snap["positions"][0])


def test_snapshot_var_equals_independent_computation(engine: RiskEngine) -> None:
    snap = engine.snapshot("pf", 0)
    names = engine.assets.names
    e = np.array([snap["exposure_by_asset"].get(a, 0.0) for a in names])
    g = np.expm1(engine.window.chronological())
    pnl = np.sort(g @ e)
    k = math.ceil(round(len(pnl) * 0.01, 9))
    assert snap["var_99_usd"] == pytest.approx(-pnl[k - 1], rel=1e-9)
    assert snap["es_95_usd"] == pytest.approx(-pnl[: math.ceil(len(pnl) * 0.05)].mean())
    sigma = varlib.portfolio_sigma(engine.ewma.covariance(), e)
    assert snap["parametric_var_99_usd"] == pytest.approx(2.3263478740408408 * sigma)
    gross = snap["total_exposure_usd"]
    assert snap["var_to_exposure"] == pytest.approx(snap["var_95_usd"] / gross)


def test_engine_is_deterministic() -> None:
    a = run(stream(120, seed=8)).snapshot("pf", 1)
    b = run(stream(120, seed=8)).snapshot("pf", 1)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_duplicate_and_stale_positions_do_not_change_risk(engine: RiskEngine) -> None:
    eng = run(stream(60))
    before = eng.snapshot("pf", 0)
    rec = next(r for k, r in stream(60) if k == "pos")
    assert eng.on_position(rec) is False
    assert eng.on_position({**rec, "seq": rec["seq"] - 1, "quantity": 99.0}) is False
    after = eng.snapshot("pf", 0)
    assert after["positions_duplicate"] == before["positions_duplicate"] + 1
    assert after["positions_stale"] == before["positions_stale"] + 1
    assert after["var_99_usd"] == before["var_99_usd"]


def test_incremental_update_matches_full_recompute() -> None:
    eng = run(stream(140))
    eng.headline_var("pf")  # warm the cache
    for j in range(30):
        eng.on_position({"position_id": f"p{j % 6}", "seq": 10_000 + j, "action": "update",
                         "portfolio": "pf", "strategy": "s0", "kind": "arbitrage",
                         "chain": "ethereum", "protocol": "uni", "asset": "ETH",
                         "quantity": float(j - 15), "notional_usd": 0.0,
                         "entry_price_usd": 1.0, "ts_ms": 0})
        fast = eng.headline_var("pf", 0.99)
        eng.portfolios["pf"].cache = None
        assert fast == pytest.approx(eng.headline_var("pf", 0.99), rel=1e-9, abs=1e-9)


def test_bad_inputs_raise_and_late_ticks_count() -> None:
    eng = run(stream(30))
    for bad in ({"kind": "price", "asset": "ETH", "ts_ms": 50_000, "price_usd": -1.0},
                {"kind": "price", "asset": "ETH", "ts_ms": "x", "price_usd": 1.0},
                {"kind": "weather", "ts_ms": 1},
                {"kind": "gas", "chain": "ethereum", "ts_ms": 1, "base_fee_gwei": "hi"}):
        with pytest.raises(RiskInputError):
            eng.on_tick(bad)
    with pytest.raises(RiskInputError):
        eng.on_position({"position_id": "x", "seq": 1, "action": "open"})
    assert eng.on_tick({"kind": "price", "asset": "ETH", "ts_ms": 10, "price_usd": 1.0}) is False
    assert eng.snapshot("pf", 0)["late_ticks"] == 1


def test_empty_portfolio_snapshot_is_valid() -> None:
    eng = RiskEngine()
    snap = eng.snapshot("nobody", 0)
    assert "nobody" not in eng.portfolios  # reading does not create state
    assert snap["var_99_usd"] == 0.0 and snap["positions"] == [] and snap["rating"] == "LOW"
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap


def test_strategy_health_via_engine(engine: RiskEngine) -> None:
    h = engine.strategy_health("s0")
    assert h["intervals"] > 0 and h["inclusion_rate"] == pytest.approx(0.6)
    assert h["gas_to_gross"] == pytest.approx(0.25)

"""Gas/liquidity market state, config loading, and an engine flash-crash scenario."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.risk.config import RiskConfig, load_risk_config, risk_config_from_dict
from agents.risk.engine import RiskEngine
from agents.risk.errors import RiskConfigError, RiskInputError
from agents.risk.market import GasState, LiquidityState, nearest_rank


def test_nearest_rank_p95() -> None:
    vals = list(range(1, 21))  # 20 values: ceil(0.95 * 20) = 19th
    assert nearest_rank(vals, 0.95) == 19
    assert nearest_rank([5.0], 0.95) == 5.0


def test_gas_window_per_chain() -> None:
    g = GasState(window_ms=1_000)
    for t, v in ((0, 100.0), (500, 10.0), (1_200, 20.0), (1_400, 30.0)):
        g.add("ethereum", t, v)
    g.add("arbitrum", 0, 0.1)
    g.add("ethereum", 100, 999.0)  # out of the window already: ignored
    s = g.stats()
    assert s["ethereum"] == {"mean": pytest.approx(20.0), "p95": 30.0, "max": 30.0, "n": 3.0}
    assert list(s) == ["arbitrum", "ethereum"]


def test_liquidity_aggregation_and_ratio() -> None:
    liq = LiquidityState(ewma_alpha=0.5)
    liq.add({"asset": "ETH", "pool": "a", "ts_ms": 1, "depth_usd": 100.0, "spread_bps": 10.0})
    liq.add({"asset": "ETH", "pool": "b", "ts_ms": 1, "depth_usd": 300.0, "spread_bps": 2.0})
    liq.add({"asset": "ETH", "pool": "b", "ts_ms": 0, "depth_usd": 1.0, "spread_bps": 99.0})  # old
    depth, spread = liq.per_asset()["ETH"]
    assert depth == 400.0 and spread == pytest.approx((100 * 10 + 300 * 2) / 400)
    assert liq.liquidity_ratio() == pytest.approx(1.0)
    liq.add({"asset": "ETH", "pool": "b", "ts_ms": 2, "depth_usd": 0.0, "spread_bps": 2.0})
    # depth now 100; EWMA of pool b = 150 -> reference 250
    assert liq.liquidity_ratio() == pytest.approx(100 / 250)
    with pytest.raises(RiskInputError):
        liq.add({"asset": "ETH", "pool": "b", "ts_ms": 3, "depth_usd": -1.0})


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(RiskConfigError, match="unknown keys"):
        risk_config_from_dict({"bar_msec": 5})
    with pytest.raises(RiskConfigError, match="unknown keys"):
        risk_config_from_dict({"rating": {"hihg": 0.7}})
    f = tmp_path / "r.yaml"
    f.write_text("bar_ms: 1000\nkind_weights: {sandwich: 2.0}\n")
    cfg = load_risk_config(f)
    assert cfg.bar_ms == 1000 and cfg.kind_weight("sandwich") == 2.0
    assert cfg.kind_weight("arbitrage") == 0.5 and cfg.kind_weight("unheard-of") == 1.0


def test_flash_crash_raises_var_and_rating_within_a_few_bars() -> None:
    eng = RiskEngine(RiskConfig(bar_ms=1_000, window_bars=200), backtest_min_scenarios=50)
    rng = np.random.default_rng(4)
    price = {"ETH": 3000.0, "WBTC": 60000.0}
    eng.on_position({"position_id": "p1", "seq": 1, "action": "open", "portfolio": "pf",
                     "strategy": "s", "kind": "liquidation", "chain": "ethereum",
                     "protocol": "aave", "asset": "ETH", "quantity": 20.0,
                     "notional_usd": 60_000.0, "entry_price_usd": 3000.0, "ts_ms": 0})
    eng.on_position({"position_id": "p2", "seq": 1, "action": "open", "portfolio": "pf",
                     "strategy": "s", "kind": "arbitrage", "chain": "ethereum",
                     "protocol": "uni", "asset": "WBTC", "quantity": 1.0,
                     "notional_usd": 60_000.0, "entry_price_usd": 60000.0, "ts_ms": 0})

    def bar(b: int, shock: float = 0.0) -> None:
        common = rng.normal(0, 0.001)
        for a in price:
            price[a] *= math.exp(shock + common + rng.normal(0, 0.001))
            eng.on_tick({"kind": "price", "asset": a, "ts_ms": b * 1_000 + 1,
                         "price_usd": price[a]})
        eng.advance(b * 1_000 + 1)

    for b in range(150):
        bar(b)
    calm = eng.snapshot("pf", 150_000)
    for b in range(150, 155):
        bar(b, shock=-0.08)
    crash = eng.snapshot("pf", 155_000)
    order = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    assert crash["var_99_usd"] > 5 * calm["var_99_usd"]
    assert order.index(crash["rating"]) > order.index(calm["rating"])
    assert crash["backtest"]["exceptions"] >= 1
    assert crash["correlation_risk"] > calm["correlation_risk"]

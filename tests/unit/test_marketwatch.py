"""Market watch figures (agents/marketwatch.py): windows, baselines, pegs, state round trip."""

from __future__ import annotations

import orjson

from agents.assembly import DEFAULT_CONFIG_DIR
from agents.marketwatch import MarketWatch, WatchConfig, load_watch_config


def _price(asset: str, price: float, ts: int) -> dict:
    return {"kind": "price", "source": "price-oracle", "asset": asset, "price_usd": price, "ts_ms": ts}


def test_jump_and_depeg_figures() -> None:
    w = MarketWatch(WatchConfig(pegs={"USDC": 1.0}, jump_window_ms=5_000))
    for i in range(10):
        w.on_tick(_price("ETH", 3000.0, i * 500))
    w.on_tick(_price("ETH", 2700.0, 5_000))
    ctx = w.asset_context("ETH", 5_000)
    assert abs(ctx["drop_pct"] - 0.1) < 1e-9 and ctx["jump_pct"] == ctx["drop_pct"]
    assert not ctx["pegged"] and ctx["depeg_pct"] == 0.0
    w.on_tick(_price("USDC", 0.99, 5_000))
    usdc = w.asset_context("USDC", 5_000)
    assert usdc["pegged"] and abs(usdc["depeg_pct"] - 0.01) < 1e-9


def test_gas_jump_needs_a_warm_baseline() -> None:
    w = MarketWatch(WatchConfig(warmup=30))
    gas = {"kind": "gas", "source": "gas-tracker", "chain": "ethereum", "priority_fee_gwei": 0.0}
    for i in range(28):
        w.on_tick({**gas, "base_fee_gwei": 20.0, "ts_ms": i * 100})
    w.on_tick({**gas, "base_fee_gwei": 200.0, "ts_ms": 2_800})
    assert w.gas(2_800)["ethereum"]["jump"] == 1.0  # 29th observation: still warming up
    w.on_tick({**gas, "base_fee_gwei": 200.0, "ts_ms": 2_900})
    g = w.gas(2_900)["ethereum"]
    assert g["jump"] == 10.0 and g["ratio"] > 5.0


def test_dlq_window_counts_in_event_time() -> None:
    w = MarketWatch(WatchConfig(dlq_window_ms=10_000))
    for ts in (1_000, 2_000, 3_000):
        w.on_rejected(ts)
    assert w.global_context(3_000)["dlq_recent"] == 3.0
    assert w.global_context(12_500)["dlq_recent"] == 1.0
    assert w.global_context(12_500)["dlq_total"] == 3.0


def test_revert_z_against_the_strategys_baseline() -> None:
    w = MarketWatch(WatchConfig(warmup=5, revert_window_ms=4_000))
    stats = {"strategy": "s", "portfolio": "p", "bundles_submitted": 20}
    for i in range(1, 60):
        w.on_stats({**stats, "bundles_reverted": 1, "ts_ms": i * 1000})
    assert abs(w.strategy_recent("s", 60_000)["revert_z"]) < 1.0
    for i in range(60, 64):
        w.on_stats({**stats, "bundles_reverted": 8, "ts_ms": i * 1000})
    recent = w.strategy_recent("s", 64_000)
    assert recent["revert_z"] > 6.0 and recent["baseline_revert_rate"] < 0.06  # the storm was not learned


def test_state_round_trips_through_json() -> None:
    w = MarketWatch(load_watch_config(DEFAULT_CONFIG_DIR / "watch.yaml"))
    for i in range(50):
        w.on_tick(_price("ETH", 3000.0 + i, i * 100), score=0.1 * (i % 10), flagged=i % 10 == 9)
        w.on_tick({"kind": "liquidity", "source": "liquidity-monitor", "asset": "ETH", "pool": "p",
                   "depth_usd": 1e6 + i, "spread_bps": 2.0, "ts_ms": i * 100})
        w.on_stats({"strategy": "s", "bundles_submitted": 10, "bundles_reverted": i % 3, "ts_ms": i * 100})
    w.on_snapshot("alpha", {"ts_ms": 4_900, "total_exposure_usd": 1e6, "exposure_by_asset": {"ETH": 1e6}})
    w.on_rejected(4_000)
    back = MarketWatch.from_dict(w.config, orjson.loads(orjson.dumps(w.to_dict())))
    back.install_strategy("s", orjson.loads(orjson.dumps(w.strategy_state("s"))))
    back.install_portfolio("alpha", orjson.loads(orjson.dumps(w.portfolio_state("alpha"))))
    assert back.to_dict() == w.to_dict()
    assert back.global_context(5_000) == w.global_context(5_000)
    assert back.asset_context("ETH", 5_000) == w.asset_context("ETH", 5_000)

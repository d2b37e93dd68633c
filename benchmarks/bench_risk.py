"""Risk core benchmark: full recompute, incremental position update, memory.

Run: ``.venv/bin/python benchmarks/bench_risk.py [--positions 1000] [--assets 50]
[--scenarios 500] [--repeat 200]``. Prints ``key=value`` lines; among them
``risk_recompute_ms_median`` (target <= 2), ``position_update_us_median``
(target <= 20) and ``rss_mib_per_10k_positions`` (target <= 50).
No broker involved: this measures the pure core (agents/risk).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.risk.config import RiskConfig
from agents.risk.engine import RiskEngine
from agents.risk.stress import load_scenarios

KINDS = ("arbitrage", "liquidation", "sandwich", "frontrun", "backrun", "jit")
SCENARIOS = Path(__file__).resolve().parents[1] / "deploy" / "config" / "scenarios.yaml"


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def position(i: int, seq: int, assets: list[str], rng: np.random.Generator,
             portfolio: str = "pf") -> dict:
    """A synthetic ``mev.positions`` open/update record."""
    asset = assets[i % len(assets)]
    qty = float(rng.normal(0.0, 10.0))
    return {"position_id": f"pos-{i:06d}", "seq": seq, "action": "open" if seq == 1 else "update",
            "portfolio": portfolio, "strategy": f"strat-{i % 20}", "kind": KINDS[i % len(KINDS)],
            "chain": ("ethereum", "arbitrum", "base")[i % 3], "protocol": f"proto-{i % 8}",
            "asset": asset, "quantity": qty, "notional_usd": qty * 100.0,
            "entry_price_usd": 100.0, "ts_ms": 0}


def build(n_assets: int, n_scen: int, n_pos: int, seed: int = 7) -> tuple[RiskEngine, list[str]]:
    """Engine with ``n_scen`` closed bars over ``n_assets`` and ``n_pos`` positions."""
    rng = np.random.default_rng(seed)
    eng = RiskEngine(RiskConfig(bar_ms=1000, window_bars=n_scen), load_scenarios(SCENARIOS))
    assets = [f"A{j:02d}" for j in range(n_assets)]
    prices = rng.uniform(1.0, 1000.0, n_assets)
    for b in range(n_scen + 2):
        prices *= np.exp(rng.normal(0.0, 0.01, n_assets))
        for j, a in enumerate(assets):
            eng.on_tick({"kind": "price", "asset": a, "price_usd": float(prices[j]),
                         "ts_ms": b * 1000 + 1})
        eng.advance(b * 1000)
    for a in assets:
        eng.on_tick({"kind": "liquidity", "asset": a, "pool": "p", "ts_ms": 1,
                     "depth_usd": 1e6, "spread_bps": 5.0})
    for i in range(n_pos):
        eng.on_position(position(i, 1, assets, rng))
    return eng, assets


def timed(fn, repeat: int) -> list[float]:
    """Wall times (seconds) of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--assets", type=int, default=50)
    ap.add_argument("--scenarios", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=300)
    args = ap.parse_args()
    eng, assets = build(args.assets, args.scenarios, args.positions)
    pf = eng.portfolios["pf"]
    print(f"python={platform.python_version()} numpy={np.__version__} machine={platform.machine()}")
    with open("/proc/loadavg", encoding="ascii") as fh:
        print(f"loadavg_1m={fh.read().split()[0]} cpus={os.cpu_count()}")
    print(f"positions={args.positions} assets={args.assets} "
          f"n_scenarios={eng.window.count} repeat={args.repeat}")

    def full() -> None:
        pf.cache = None  # force the exposure vector and scenario P&L to be rebuilt
        eng.compute("pf")

    full()
    t = timed(full, args.repeat)
    print(f"risk_recompute_ms_median={statistics.median(t) * 1e3:.3f}")
    print(f"risk_recompute_ms_min={min(t) * 1e3:.3f}")
    print(f"risk_recompute_ms_p95={sorted(t)[int(0.95 * len(t))] * 1e3:.3f}")

    def snap() -> None:
        pf.cache = None
        eng.snapshot("pf", 0)

    t = timed(snap, max(20, args.repeat // 5))
    print(f"snapshot_full_ms_median={statistics.median(t) * 1e3:.3f}")

    rng = np.random.default_rng(11)
    eng.headline_var("pf")  # warm the cache: the incremental path needs a current one
    seqs = {i: 1 for i in range(args.positions)}
    recs = []
    for _k in range(args.repeat * 5):
        i = int(rng.integers(args.positions))
        seqs[i] += 1
        recs.append(position(i, seqs[i], assets, rng))
    it = iter(recs)
    t = timed(lambda: eng.on_position(next(it)), args.repeat * 2)
    print(f"position_update_us_median={statistics.median(t) * 1e6:.2f}")
    print(f"position_update_us_p95={sorted(t)[int(0.95 * len(t))] * 1e6:.2f}")

    def update_and_var() -> None:
        eng.on_position(next(it))
        eng.headline_var("pf", 0.99)

    t = timed(update_and_var, args.repeat * 2)
    print(f"position_update_with_var99_us_median={statistics.median(t) * 1e6:.2f}")
    pf.cache = None
    exact = eng.headline_var("pf")
    print(f"incremental_vs_full_var99_abs_diff_usd={abs(exact - eng.compute('pf').var(0.99)):.3g}")

    gc.collect()
    before = rss_mib()
    for i in range(10_000):
        eng.on_position(position(i, 1, assets, rng, portfolio="mem"))
    gc.collect()
    print(f"rss_mib_per_10k_positions={rss_mib() - before:.2f}")


if __name__ == "__main__":
    main()

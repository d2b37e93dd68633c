"""Online-ML core benchmark: per-event score + learn cost of every model.

Run: ``.venv/bin/python benchmarks/bench_models.py [--events 20000] [--seed 7]``.
Prints ``key=value`` lines, among them ``anomaly_score_learn_us_median`` (tick
detector, one ``process_one`` = score + conditional learn per tick) and
``portfolio_score_learn_us_median`` (snapshot detector), plus the alert
forecaster (``observe`` + ``advance`` per snapshot), the VaR forecaster
(``learn_one`` + 7-bar ``forecast``), the whole bundle per snapshot, the
Half-Space-Trees alternative and the checkpoint size and time.
``model_checkpoint_bytes`` / ``model_checkpoint_ms`` / ``model_restore_ms`` are the
worker's per-part checkpoint (``agents.anomaly.checkpoint``: every part, pickled,
zlib'd, enveloped) after ``--sim-seconds`` of the simulator through the pure pipeline
(1 s bars), and the restore of those records into a fresh bundle.
No broker involved: this measures the pure core (agents/anomaly).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.anomaly.forecast import AlertForecaster
from agents.anomaly.models import ModelBundle
from agents.anomaly.portfolio import PortfolioAnomalyScorer, snapshot_features
from agents.anomaly.ticks import TickAnomalyDetector
from agents.anomaly.varcast import VarForecaster

T0_MS = 1_700_000_000_000
SECRET = b"benchmark-checkpoint-secret"


def ticks(n: int, seed: int) -> list[dict[str, Any]]:
    """GBM price ticks for 5 assets, with gas and liquidity ticks interleaved."""
    rng = np.random.default_rng(seed)
    assets = ["ETH", "WBTC", "ARB", "OP", "SOL"]
    price = dict.fromkeys(assets, 100.0)
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        ts = T0_MS + i * 1000
        for a in assets:
            price[a] *= math.exp(0.001 * rng.standard_normal())
            out.append({"kind": "price", "asset": a, "ts_ms": ts, "price_usd": price[a]})
        gas = 30.0 * math.exp(0.1 * rng.standard_normal())
        out.append(
            {"kind": "gas", "chain": "ethereum", "ts_ms": ts, "base_fee_gwei": gas, "priority_fee_gwei": 1.0}
        )
        out.append(
            {
                "kind": "liquidity",
                "asset": assets[i % 5],
                "ts_ms": ts,
                "depth_usd": 1e6 * math.exp(0.05 * rng.standard_normal()),
                "spread_bps": 5.0 * math.exp(0.1 * rng.standard_normal()),
            }
        )
        i += 1
    return out[:n]


def snapshots(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        exposure = 1e6 * math.exp(0.1 * rng.standard_normal())
        var95 = 0.03 * exposure * math.exp(0.2 * rng.standard_normal())
        out.append(
            {
                "ts_ms": T0_MS + i * 60_000,
                "total_risk": 0.3 + 0.05 * rng.standard_normal(),
                "max_concentration": 0.35 + 0.05 * rng.standard_normal(),
                "correlation_risk": 0.4 + 0.05 * rng.standard_normal(),
                "total_exposure": exposure,
                "var_95": var95,
                "var_99": 1.4 * var95,
                "volatility": 0.02,
                "gas_price_gwei": 30.0,
                "liquidity_ratio": 1.0 + 0.1 * rng.standard_normal(),
            }
        )
    return out


def per_event_us(step: Callable[[Any], Any], events: list[Any]) -> list[float]:
    """Wall time of ``step(event)`` for each event, in microseconds."""
    clock = time.perf_counter_ns
    out = []
    for event in events:
        t0 = clock()
        step(event)
        out.append((clock() - t0) / 1000.0)
    return out


def report(name: str, samples: list[float]) -> None:
    samples = sorted(samples)
    print(f"{name}_us_median={statistics.median(samples):.2f}")
    print(f"{name}_us_p99={samples[int(0.99 * (len(samples) - 1))]:.2f}")
    print(f"{name}_events_per_second={len(samples) / (sum(samples) / 1e6):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sim-seconds", type=float, default=900.0,
                        help="simulated seconds before the per-part model checkpoint (0: skip)")
    args = parser.parse_args()
    n = args.events
    print(f"python={platform.python_version()} machine={platform.machine()} events={n}")

    tick_events = ticks(n, args.seed)
    report("anomaly_score_learn", per_event_us(TickAnomalyDetector(seed=args.seed).process_one, tick_events))
    hst = TickAnomalyDetector(seed=args.seed, method="hst")
    report("anomaly_hst_score_learn", per_event_us(hst.process_one, tick_events[: n // 4]))

    snaps = snapshots(n, args.seed)
    report("portfolio_score_learn", per_event_us(PortfolioAnomalyScorer(seed=args.seed).process_one, snaps))

    forecaster = AlertForecaster(horizon_ms=15 * 60_000)

    def forecast_step(snap: dict[str, Any]) -> None:
        forecaster.observe(snap["ts_ms"], snapshot_features(snap))
        if snap["var_95"] > 0.05 * snap["total_exposure"]:
            forecaster.record_alert(snap["ts_ms"] + 1, "HIGH")
        forecaster.advance(snap["ts_ms"] + 1)

    report("alert_forecast_observe_learn", per_event_us(forecast_step, snaps))
    print(f"alert_forecast_roc_auc_on_noise={forecaster.status()['roc_auc']:.3f}")

    varcast = VarForecaster()

    def var_step(snap: dict[str, Any]) -> None:
        varcast.learn_one(snap)
        varcast.forecast(7)

    report("var_forecast_learn_forecast7", per_event_us(var_step, snaps))

    bundle = ModelBundle(seed=args.seed)
    for tick in tick_events:
        bundle.on_tick(tick)

    def bundle_step(snap: dict[str, Any]) -> None:
        bundle.on_snapshot("pf", snap)
        bundle.advance(snap["ts_ms"] + 1)

    report("bundle_snapshot", per_event_us(bundle_step, snaps))
    blob_times = []
    for _ in range(20):
        t0 = time.perf_counter()
        blob = bundle.state_bytes(SECRET)
        ModelBundle.from_state_bytes(blob, SECRET)
        blob_times.append((time.perf_counter() - t0) * 1000.0)
    print(f"checkpoint_bytes={len(blob)}")
    print(f"checkpoint_roundtrip_ms_median={statistics.median(blob_times):.2f}")
    if args.sim_seconds > 0:
        simulator_checkpoint(args.sim_seconds, args.seed)


def simulator_checkpoint(seconds: float, seed: int) -> None:
    """Checkpoint every part of the worker's models after ``seconds`` of simulated operation."""
    from agents.anomaly.checkpoint import TICKS_KEY, Checkpoint, portfolio_key, restore
    from agents.assembly import PipelineOptions, build_pipeline
    from streams.sim.generator import Simulator

    pipeline = build_pipeline(PipelineOptions(bar_ms=1000))
    for ev in Simulator(seed, T0_MS, 150, seconds):
        if isinstance(ev.value, dict):
            pipeline.offer(ev.topic, ev.value)
    bundle = pipeline.models
    assert bundle is not None
    as_of = pipeline.watermark_ms
    times, restore_times = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        parts = [Checkpoint.take(TICKS_KEY, bundle.tick_state(), as_of)]
        parts += [Checkpoint.take(portfolio_key(n), m, as_of) for n, m in bundle.portfolios.items()]
        records = [(c.key, c.to_bytes(SECRET)) for c in parts]
        times.append((time.perf_counter() - t0) * 1000.0)
        t0 = time.perf_counter()
        restored = restore(ModelBundle(seed=0), records, SECRET)
        restore_times.append((time.perf_counter() - t0) * 1000.0)
        assert not restored.refused
    sizes = {key: len(value) for key, value in records}
    print(f"model_checkpoint_sim_seconds={seconds:.0f} portfolios={len(bundle.portfolios)}")
    print(f"model_checkpoint_bytes={sum(sizes.values())}")
    print(f"model_checkpoint_ticks_bytes={sizes[TICKS_KEY]}")
    print(f"model_checkpoint_portfolio_bytes_max={max(v for k, v in sizes.items() if k != TICKS_KEY)}")
    print(f"model_checkpoint_ms={statistics.median(times):.1f}")
    per_portfolio = statistics.median(times) / max(1, len(bundle.portfolios))
    print(f"model_checkpoint_ms_per_portfolio={per_portfolio:.1f}")
    print(f"model_restore_ms={statistics.median(restore_times):.1f}")
    # the market block's model outputs (tick anomaly scores, volume ratio) added to every snapshot
    last = next(iter(pipeline.latest_snapshots.values()))
    copies = [{**last, "market": dict(last["market"])} for _ in range(2_000)]
    print(f"market_block_keys={len(bundle.ticks.keys)}")
    report("market_block", per_event_us(bundle.add_market, copies))


if __name__ == "__main__":
    main()

"""End-to-end pure pipeline throughput (risk + rules + audit, with and without the online models).

Two modes, both printing key=value lines:

* default (``bench_pipeline.py [pairs]``): events per second through ``RiskPipeline.offer`` for a
  seeded 2-minute simulator recording, and the share of throughput the models cost (issue 6:
  <= 20 %): the median over interleaved pairs of runs (default 7 pairs), after a warm-up. Its
  windows are never full (2 minutes of event time against a 5-minute gas window and 500 bars).
* ``--steady``: steady state at full windows. A simulated desk of ``--portfolios`` portfolios of
  about ``--positions`` open positions each (the default strategies copied into every portfolio,
  holding long enough to stay at their limit) warms up for ``--warmup-s`` seconds of event time
  (>= 900: the 5-minute gas window and the 500 one-second bars are full), then the next
  ``--measure-s`` seconds are timed: ``snapshot_ms_median`` and ``snapshot_ms_p99`` (wall time of
  ``RiskEngine.snapshot``, ms), ``events_per_sec`` through the pipeline, ``snapshots``.

Run: .venv/bin/python benchmarks/bench_pipeline.py [pairs]
     .venv/bin/python benchmarks/bench_pipeline.py --steady [--portfolios 20] [--positions 50]
         [--rate-eps 1000] [--warmup-s 900] [--measure-s 60] [--models]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import RiskPipeline
from streams.sim.config import SimConfig, default_config
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000


def events() -> list[tuple[str, dict]]:
    sim = Simulator(7, START_MS, 200, 120, [Incident.parse("flash-crash@60s/20s")])
    return [(ev.topic, ev.value) for ev in sim if isinstance(ev.value, dict)]


def run(evs: list[tuple[str, dict]], models: bool) -> float:
    gc.collect()
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000, models=models))
    started = time.perf_counter()
    for topic, value in evs:
        pipeline.offer(topic, value)
    pipeline.drain()
    return len(evs) / (time.perf_counter() - started)


def pairs_mode(pairs: int) -> None:
    evs = events()
    print(f"events={len(evs)}")
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    run(evs, models=False), run(evs, models=True)  # warm-up: imports, rule compilation, caches
    # interleaved pairs, so a change of machine load hits both sides alike
    measured = [(run(evs, models=False), run(evs, models=True)) for _ in range(pairs)]
    without = statistics.median(a for a, _ in measured)
    with_models = statistics.median(b for _, b in measured)
    cost = statistics.median(100 * (1 - b / a) for a, b in measured)
    print(f"pairs={pairs}")
    print(f"pipeline_events_per_sec_without_models={without:.0f}")
    print(f"pipeline_events_per_sec_with_models={with_models:.0f}")
    print(f"models_throughput_cost_pct={cost:.1f}")


# ---- steady state at full windows --------------------------------------------------------------
def desk_config(portfolios: int, positions: int) -> SimConfig:
    """The default desk's strategies copied into ``portfolios`` portfolios; each strategy keeps at
    most its share of ``positions`` open and holds them for minutes, so books stay near full."""
    base = default_config()
    per_strategy = max(1, -(-positions // len(base.strategies)))
    strategies = tuple(
        dataclasses.replace(s, name=f"{s.name}-{p:02d}", portfolio=f"pf{p:02d}",
                            max_open=per_strategy, hold_s=300.0)
        for p in range(portfolios) for s in base.strategies)
    return dataclasses.replace(base, strategies=strategies)


def _timed(fn: Callable[..., dict[str, Any]], sink: list[float]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        return out
    return wrapper


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def steady_mode(args: argparse.Namespace) -> None:
    cfg = desk_config(args.portfolios, args.positions)
    sim = Simulator(7, START_MS, args.rate_eps, args.warmup_s + args.measure_s, config=cfg)
    stream: Iterator[tuple[str, dict]] = ((ev.topic, ev.value) for ev in sim
                                          if isinstance(ev.value, dict))
    pipeline: RiskPipeline = build_pipeline(PipelineOptions(bar_ms=1000, models=args.models))
    warm_end = START_MS + args.warmup_s * 1000
    started = time.perf_counter()
    measured: list[tuple[str, dict]] = []
    for topic, value in stream:
        if value.get("ts_ms", 0) >= warm_end:
            measured.append((topic, value))
            break
        pipeline.offer(topic, value)
    measured.extend(stream)  # generated before timing: the simulator is not what we measure
    warm_s = time.perf_counter() - started
    durations: list[float] = []
    pipeline.risk.snapshot = _timed(pipeline.risk.snapshot, durations)  # type: ignore[method-assign]
    gc.collect()
    started = time.perf_counter()
    for topic, value in measured:
        pipeline.offer(topic, value)
    pipeline.drain()
    elapsed = time.perf_counter() - started
    risk = pipeline.risk
    sizes = [len(pf.book) for pf in risk.portfolios.values()]
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    print(f"portfolios={len(risk.portfolios)}")
    print(f"positions_per_portfolio_mean={statistics.fmean(sizes) if sizes else 0:.1f}")
    print(f"warmup_event_s={args.warmup_s}")
    print(f"warmup_wall_s={warm_s:.1f}")
    print(f"gas_window_obs={sum(int(s['n']) for s in risk.gas.stats().values())}")
    print(f"return_window_bars={risk.window.count}")
    print(f"measured_event_s={args.measure_s}")
    print(f"measured_events={len(measured)}")
    print(f"events_per_sec={len(measured) / elapsed:.0f}")
    print(f"snapshots={len(durations)}")
    print(f"snapshot_ms_median={1e3 * statistics.median(durations):.3f}")
    print(f"snapshot_ms_p99={1e3 * _quantile(durations, 0.99):.3f}")
    print(f"snapshot_share_of_time_pct={100 * sum(durations) / elapsed:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="?", type=int, default=7,
                        help="default mode: interleaved pairs of runs")
    parser.add_argument("--steady", action="store_true", help="steady state at full windows")
    parser.add_argument("--portfolios", type=int, default=20)
    parser.add_argument("--positions", type=int, default=50, help="open positions per portfolio")
    parser.add_argument("--rate-eps", type=float, default=1000.0,
                        help="simulated events per second of event time")
    parser.add_argument("--warmup-s", type=int, default=900, help="event seconds before timing")
    parser.add_argument("--measure-s", type=int, default=60, help="event seconds timed")
    parser.add_argument("--models", action="store_true", help="steady mode: run the online models")
    args = parser.parse_args()
    if args.steady:
        steady_mode(args)
    else:
        pairs_mode(args.pairs)


if __name__ == "__main__":
    main()

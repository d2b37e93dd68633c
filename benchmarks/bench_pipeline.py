"""End-to-end pure pipeline throughput (risk + rules + audit, with and without the online models).

Prints key=value lines: events per second through ``RiskPipeline.offer`` for a seeded
simulator recording, and the share of throughput the models cost (issue 6: <= 20 %): the
median over interleaved pairs of runs (argument: how many pairs, default 7), after a warm-up.
Run: .venv/bin/python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.assembly import PipelineOptions, build_pipeline
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


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
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


if __name__ == "__main__":
    main()

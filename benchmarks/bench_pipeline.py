"""End-to-end pure pipeline throughput (risk + rules + audit, with and without the online models).

Prints key=value lines: events per second through ``RiskPipeline.offer`` for a seeded
simulator recording, and the share of throughput the models cost (issue 6: <= 20 %).
Run: .venv/bin/python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

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
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000, models=models))
    started = time.perf_counter()
    for topic, value in evs:
        pipeline.offer(topic, value)
    pipeline.drain()
    return len(evs) / (time.perf_counter() - started)


def main() -> None:
    evs = events()
    print(f"events={len(evs)}")
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    without = statistics.median(run(evs, models=False) for _ in range(3))
    with_models = statistics.median(run(evs, models=True) for _ in range(3))
    print(f"pipeline_events_per_sec_without_models={without:.0f}")
    print(f"pipeline_events_per_sec_with_models={with_models:.0f}")
    print(f"models_throughput_cost_pct={100 * (1 - with_models / without):.1f}")


if __name__ == "__main__":
    main()

"""Checkpoint size and cost of the pure pipeline's state (agents.state): take and restore.

Feeds a seeded simulator recording (the default desk's strategies replicated over N portfolios,
1 s bars, a flash crash) for M minutes of event time, so the 500-bar return windows are full, the
books and backtests are long-lived and the models warm; then takes the checkpoint (market + one
blob per input partition, positions partitioned by portfolio over P partitions) and restores it
into fresh pipelines. Prints key=value lines:

* ``checkpoint_bytes_per_portfolio``: sum of the partition blobs / portfolios (sealed, compressed);
* ``checkpoint_market_bytes``, ``checkpoint_total_bytes``, ``checkpoint_buffered_events``;
* ``checkpoint_take_ms_median``, ``checkpoint_restore_ms_median`` over R repetitions.

Run: .venv/bin/python benchmarks/bench_checkpoint.py [--minutes 15] [--portfolios 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.assembly import PipelineOptions, build_pipeline
from agents.state import MARKET_KEY, restore, take
from streams.sim.config import default_config
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
SECRET = b"benchmark-checkpoint-secret-0123"
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)


def recording(minutes: float, portfolios: int, rate: float) -> list[tuple[str, dict, int]]:
    base = default_config()
    strategies = tuple(
        dataclasses.replace(s, name=f"{s.name}-{i}", portfolio=f"pf-{i:02d}")
        for i in range(portfolios) for s in base.strategies)
    config = dataclasses.replace(base, strategies=strategies)
    sim = Simulator(11, START_MS, rate, minutes * 60, [Incident.parse("flash-crash@300s/20s")], config=config)
    return [(ev.topic, ev.value, _partition(ev.topic, ev.value)) for ev in sim if isinstance(ev.value, dict)]


PARTITIONS = 4


def _partition(topic: str, value: dict) -> int:
    key = value.get("portfolio") if topic == "mev.positions" else (
        value.get("strategy") or value.get("asset") or value.get("chain") or "")
    return zlib.crc32(str(key).encode()) % PARTITIONS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--portfolios", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    events = recording(args.minutes, args.portfolios, args.rate)
    pipeline = build_pipeline(OPTIONS)
    started = time.perf_counter()
    for topic, value, partition in events:
        pipeline.offer(topic, value, partition)
    fed_s = time.perf_counter() - started
    owned = sorted({p for p in pipeline._home.values()})
    take_ms, restore_ms = [], []
    blobs: dict[str, bytes] = {}
    for _ in range(args.repeat):
        gc.collect()
        t0 = time.perf_counter()
        blobs = take(pipeline, owned, secret=SECRET)
        take_ms.append((time.perf_counter() - t0) * 1e3)
        fresh = build_pipeline(OPTIONS)
        gc.collect()
        t0 = time.perf_counter()
        report = restore(fresh, blobs, secret=SECRET)
        restore_ms.append((time.perf_counter() - t0) * 1e3)
    n_portfolios = len(pipeline.risk.portfolios)
    partition_bytes = sum(len(b) for k, b in blobs.items() if k != MARKET_KEY)
    print(f"events={len(events)}")
    print(f"event_time_minutes={args.minutes:g}")
    print(f"events_per_s_fed={len(events) / fed_s:.0f}")
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    print(f"portfolios={n_portfolios}")
    print(f"partitions={len(owned)}")
    print(f"return_window_bars={pipeline.risk.window.count}")
    print(f"open_positions={sum(len(p.book) for p in pipeline.risk.portfolios.values())}")
    closed = sum(len(p.book.closed_seq) for p in pipeline.risk.portfolios.values())
    print(f"closed_positions_remembered={closed}")
    print(f"checkpoint_buffered_events={report.buffered_events}")
    print(f"checkpoint_market_bytes={len(blobs[MARKET_KEY])}")
    print(f"checkpoint_total_bytes={sum(len(b) for b in blobs.values())}")
    print(f"checkpoint_bytes_per_portfolio={partition_bytes / max(n_portfolios, 1):.0f}")
    print(f"checkpoint_take_ms_median={statistics.median(take_ms):.1f}")
    print(f"checkpoint_restore_ms_median={statistics.median(restore_ms):.1f}")


if __name__ == "__main__":
    main()

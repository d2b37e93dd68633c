"""A takeover restores from two workers' checkpoints: each worker stops its clock at the same instant
(``RiskPipeline.checkpoint_ms``), so the market and partition 0 from one worker's checkpoint and
partition 1 from the other's restore together, and the rest of the run equals the uninterrupted one."""

from __future__ import annotations

import math
from typing import Any

from agents.assembly import build_pipeline
from agents.pipeline import Output, RiskPipeline
from agents.state import restore, take
from tests.unit.state.conftest import OPTIONS, SECRET, START_MS, Event

INTERVAL_MS = 20_000
INSTANT = START_MS + 80_000 - 1  # START_MS is a multiple of the interval


def _worker(partition: int) -> RiskPipeline:
    pipeline = build_pipeline(OPTIONS)
    pipeline.owned_partitions = frozenset({partition})
    pipeline.leader = partition == 0
    pipeline.checkpoint_ms = INTERVAL_MS
    return pipeline


def _run_until_instant(events: list[Event], partition: int) -> tuple[dict[str, bytes], set[int]]:
    """A worker owning ``partition`` reads the ticks and its partition's events; at ``INSTANT`` it
    takes its checkpoint. Returns the blobs and the indexes (in ``events``) it had read."""
    worker = _worker(partition)
    read: set[int] = set()
    for i, (topic, value, p) in enumerate(events):
        if topic != "mev.market.ticks" and p != partition:
            continue
        worker.offer(topic, value, p)
        read.add(i)
        while worker.checkpoint_due is not None:
            if worker.checkpoint_due == INSTANT:
                return take(worker, {partition}, secret=SECRET), read
            worker.resume()
    raise AssertionError("the run never reached the checkpoint instant")


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ; floats within 1e-9 relative count as equal (each worker admits
    the assets it sees in its own order, and a float sum depends on the column order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys differ"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _after(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if int(o[2].get("ts_ms", 0)) > INSTANT]


def test_partitions_of_two_workers_restore_together(events: list[Event], reference: list[Output]) -> None:
    first, read_first = _run_until_instant(events, 0)
    second, read_second = _run_until_instant(events, 1)
    survivor = build_pipeline(OPTIONS)
    report = restore(survivor, {"market": first["market"], "p0": first["p0"], "p1": second["p1"]},
                     secret=SECRET)
    assert report.as_of_ms == INSTANT and report.partitions == (0, 1)
    assert {"alpha", "beta"} <= set(survivor.risk.portfolios)

    out: list[Output] = []
    for i, (topic, value, p) in enumerate(events):
        # the ticks and partition 0 after the first worker's checkpoint, partition 1 after the second's
        covered = read_first if topic == "mev.market.ticks" or p == 0 else read_second
        if i not in covered:
            out.extend(survivor.offer(topic, value, p))
    out.extend(survivor.drain())
    assert survivor.stats.late == 0
    expected = _after(reference)
    assert len(expected) > 100
    got = _after(out)
    assert [(t, k) for t, k, _ in got] == [(t, k) for t, k, _ in expected]
    ids = ("event_id", "control_id", "fingerprint", "transition", "seq")
    assert [{f: v.get(f) for f in ids} for _, _, v in got] == [
        {f: v.get(f) for f in ids} for _, _, v in expected]
    differing = [d for (_, _, u), (_, _, v) in zip(got, expected, strict=True)
                 for d in _differences(u, v) if ".hash" not in d and ".prev_hash" not in d]
    assert not differing, differing[:5]
    assert [o for o in out if int(o[2].get("ts_ms", 0)) <= INSTANT] == [], "nothing before the instant again"


def test_the_instant_is_the_same_whoever_takes_it(events: list[Event]) -> None:
    first, _ = _run_until_instant(events, 0)
    second, _ = _run_until_instant(events, 1)
    from agents.state.envelope import open_blob

    assert open_blob(first["market"], SECRET, expected_key="market")[0].as_of_ms == INSTANT
    assert open_blob(second["market"], SECRET, expected_key="market")[0].as_of_ms == INSTANT



"""Per-partition blobs: a worker restores the market and only its partitions, and holds only those."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.assembly import build_pipeline
from agents.pipeline import Output, RiskPipeline
from agents.state import partitions_of, restore, take
from agents.state.codec import array, default
from agents.state.envelope import open_blob, seal
from tests.unit.state.conftest import OPTIONS, PORTFOLIO_PARTITION, SECRET, START_MS, Event, feed

CUT_S = 80


@pytest.fixture(scope="module")
def checkpoint(events: list[Event]) -> tuple[dict[str, bytes], int, RiskPipeline, int]:
    """Blobs of a worker that read every partition, taken mid-stream; how many outputs it had published,
    the pipeline, how many events it had read."""
    cut = next(i for i, (_, value, _) in enumerate(events) if value["ts_ms"] >= START_MS + CUT_S * 1000)
    pipeline = build_pipeline(OPTIONS)
    published = len(feed(pipeline, events[:cut]))
    return take(pipeline, partitions_of(pipeline), secret=SECRET), published, pipeline, cut


def _owner(pipeline: RiskPipeline, output: Output) -> int | None:
    """The input partition whose owner publishes ``output``; None: the leader (market-wide, global)."""
    topic, key, value = output
    if topic == "risk.snapshots":
        return PORTFOLIO_PARTITION[key]
    if topic == "risk.alerts":
        return pipeline._home.get((value["scope"], value["entity_id"]))
    if topic == "risk.controls":
        kind, _, name = value["scope"].partition(":")
        return pipeline._home.get((kind, name))
    if topic == "risk.audit":
        return None if value["stream"] == "risk" else int(value["stream"].removeprefix("risk-p"))
    raise AssertionError(f"unexpected output on {topic}")


@pytest.mark.parametrize("partition", [0, 1])
def test_a_worker_restores_and_holds_only_its_partitions(
        events: list[Event], reference: list[Output], checkpoint: Any, partition: int) -> None:
    blobs, published, taken_from, cut = checkpoint
    worker = build_pipeline(OPTIONS)
    worker.owned_partitions = frozenset({partition})
    worker.leader = partition == 0
    own = {"market": blobs["market"], f"p{partition}": blobs[f"p{partition}"]}
    report = restore(worker, own, secret=SECRET)
    assert report.partitions == (partition,)

    mine = {name for name, home in PORTFOLIO_PARTITION.items() if home == partition}
    assert worker.models is not None
    assert set(worker.risk.portfolios) == mine and set(worker.models.portfolios) == mine
    assert set(worker.latest_snapshots) == mine
    assert set(worker._home.values()) == {partition}
    homed = {name for (kind, name), home in taken_from._home.items()
             if kind == "strategy" and home == partition}
    assert set(worker.risk.health._records) == homed and worker._strategies == homed
    assert {st.entity_id for st in worker.alerts._states.values()
            if st.scope in ("portfolio", "strategy")} <= mine | homed
    assert set(worker.audits) <= {"risk", f"risk-p{partition}"} and f"risk-p{partition}" in worker.audits
    assert all(topic == "mev.market.ticks" or p == partition for topic, p in worker._source_max)
    assert all(worker._home.get(("portfolio", v.get("portfolio"))) == partition
               for _, _, _, topic, v in worker._heap if topic == "mev.positions")

    # reading only its partitions (and every market partition) from here on, it publishes exactly
    # what the uninterrupted single worker published for them
    rest = [e for e in events[cut:] if e[0] == "mev.market.ticks" or e[2] == partition]
    got = feed(worker, rest) + worker.drain()
    expected = [o for o in reference[published:]
                if _owner(taken_from, o) == partition or (_owner(taken_from, o) is None and worker.leader)]
    assert got == expected
    assert any(t == "risk.alerts" for t, _, _ in got) or partition == 1


def test_a_partition_restores_into_other_asset_columns(checkpoint: Any) -> None:
    """A partition blob from a worker that interned assets in another order: columns are remapped."""
    blobs, _, taken_from, _ = checkpoint
    _, doc = open_blob(blobs["p0"], SECRET, "p0")
    names = doc["assets"]
    order = np.arange(len(names))[::-1]  # the other worker's column c holds our asset order[c]
    doc["assets"] = [names[i] for i in order]
    inverse = np.argsort(order)
    for portfolio in doc["portfolios"]:
        book = portfolio["risk"]["book"]
        book["leg_asset"] = inverse[array(book["leg_asset"])]
        for field in ("asset_qty", "asset_notional"):
            vec = array(book[field])
            book[field] = np.concatenate([vec[: len(names)][order], vec[len(names):]])
        pending = portfolio["risk"]["backtest"]["pending_exposures"]
        if pending is not None:
            vec = array(pending)
            portfolio["risk"]["backtest"]["pending_exposures"] = vec[order] if len(vec) == len(names) else vec
    resealed = seal("p0", int(taken_from.watermark_ms), doc, SECRET, default)

    worker = build_pipeline(OPTIONS)
    restore(worker, {"market": blobs["market"], "p0": resealed}, secret=SECRET)
    now = taken_from.watermark_ms
    got, want = worker.risk.snapshot("alpha", now), taken_from.risk.snapshot("alpha", now)
    assert got["active_positions"] == want["active_positions"] > 0
    assert got["exposure_by_asset"] == pytest.approx(want["exposure_by_asset"], rel=1e-9)
    for field in ("total_exposure_usd", "net_exposure_usd", "var_99_usd", "es_99_usd",
                  "parametric_var_99_usd"):
        assert got[field] == pytest.approx(want[field], rel=1e-9), field

"""The market watch restores bit-identically: an asset quoted in several pools sums its depth and
spread in the order the pools were first seen, and a restored watch must keep that order (a float
sum taken in another order differs in the last bits, and so would every depth ratio after it)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agents.assembly import build_pipeline
from agents.state import partitions_of, restore, take
from tests.unit.state.conftest import OPTIONS, SECRET, START_MS, Event, feed

POOLS = (("zeta:XYZ-USDC", 1000.1), ("mu:XYZ-USDC", 1000.2), ("alpha:XYZ-USDC", 1000.3))
"""Pools of a test asset seen in this order (not their name order), with their depths in USD:
1000.1 + 1000.2 + 1000.3 is 3000.6000000000004 in this order and 3000.6 in name order."""


def _with_pools(events: list[Event]) -> list[Event]:
    """After every ETH liquidity tick, one tick of each of the test asset's pools (1 ms apart)."""
    out: list[Event] = []
    for topic, value, partition in events:
        out.append((topic, value, partition))
        if value.get("kind") == "liquidity" and value.get("asset") == "ETH":
            for dt, (pool, depth) in enumerate(POOLS, start=1):
                out.append((topic, {**value, "asset": "XYZ", "pool": pool, "ts_ms": value["ts_ms"] + dt,
                                    "depth_usd": depth, "spread_bps": 1.0}, partition))
    return out


def _offsets(offered: list[Event]) -> dict[tuple[str, int], int]:
    return dict(Counter((topic, partition) for topic, _, partition in offered))


def _eth(pipeline: Any, ts_ms: int) -> dict[str, Any]:
    return dict(pipeline.watch.asset_context("XYZ", ts_ms))


def test_restored_pools_sum_in_the_order_they_were_seen(events: list[Event]) -> None:
    stream = _with_pools(events)
    cut = next(i for i, (_, v, _) in enumerate(stream) if v["ts_ms"] >= START_MS + 50_000)
    uninterrupted = build_pipeline(OPTIONS)
    reference = feed(uninterrupted, stream) + uninterrupted.drain()

    before = build_pipeline(OPTIONS)
    out = feed(before, stream[:cut])
    assert list(before.watch._assets["XYZ"].depth) != sorted(before.watch._assets["XYZ"].depth)
    after = build_pipeline(OPTIONS)
    restore(after, take(before, partitions_of(before), secret=SECRET, offsets=_offsets(stream[:cut])),
            secret=SECRET)
    assert list(after.watch._assets["XYZ"].depth) == list(before.watch._assets["XYZ"].depth)
    out += feed(after, stream[cut:]) + after.drain()

    end = stream[-1][1]["ts_ms"]
    assert _eth(after, end) == _eth(uninterrupted, end)  # bit-identical floats
    assert after.watch.to_dict() == uninterrupted.watch.to_dict()
    assert out == reference

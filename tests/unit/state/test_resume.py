"""A restored pipeline resumes where the uninterrupted one was, however long the recovery took.

The worker restores a checkpoint, then spends wall time (reading the output heads and risk.audit,
replaying the partitioned inputs after the checkpoint) before its market feed offers ticks again.
That wall time must not count as idleness of the restored sources: if it did, the replayed
positions and strategy stats alone would move the clock past ticks not offered yet, which then
arrive late, and the state (and every audit record, an acknowledgement re-applied from risk.audit
among them) would differ from what the first worker published before it died."""

from __future__ import annotations

from collections import Counter

import pytest

from agents.assembly import build_pipeline
from agents.pipeline import Output, RiskPipeline, operator_actions
from agents.state import partitions_of, restore, take
from tests.unit.state.conftest import OPTIONS, SECRET, START_MS, Event

WALL_S = 1_000.0
"""Monotonic seconds at which the first worker offers everything (nothing ever idles there)."""


def _offer(pipeline: RiskPipeline, events: list[Event], wall_s: float) -> list[Output]:
    out: list[Output] = []
    for topic, value, partition in events:
        out.extend(pipeline.offer(topic, value, partition, wall_s))
    return out


def _index(events: list[Event], at_ms: int) -> int:
    return next(i for i, (_, value, _) in enumerate(events) if value["ts_ms"] >= at_ms)


@pytest.mark.parametrize("recovery_s", [0.0, 30.0])
def test_an_acknowledgement_after_the_checkpoint_is_reapplied_identically(
        events: list[Event], recovery_s: float) -> None:
    """Checkpoint at ~62 s, acknowledgement at ~81 s, kill. The restart restores the checkpoint
    ``recovery_s`` wall seconds before it replays the positions and stats after it (bootstrap_inputs),
    then the market feed offers the ticks after it; the acknowledgement is queued from risk.audit.
    Its audit record regenerates with the same seq and hash, and every output after the checkpoint
    equals the uninterrupted run's."""
    cut, kill = _index(events, START_MS + 62_000), _index(events, START_MS + 84_000)
    first = build_pipeline(OPTIONS)
    _offer(first, events[:cut], WALL_S)
    blobs = take(first, partitions_of(first), secret=SECRET,
                 offsets=dict(Counter((topic, partition) for topic, _, partition in events[:cut])))
    live = _offer(first, events[cut:kill], WALL_S)
    alert = next(s for s in first.alerts.alerts() if s.entity_id == "beta")
    live += first.acknowledge(alert.id, "oncall-1", "on it")
    acked = [v for t, _, v in live if t == "risk.audit" and v["payload"]["transition"] == "acknowledged"]
    assert len(acked) == 1 and acked[0]["ts_ms"] > START_MS + 62_000
    live += _offer(first, events[kill:], WALL_S) + first.drain()
    assert first.stats.late == 0

    restarted = build_pipeline(OPTIONS)
    report = restore(restarted, blobs, secret=SECRET, wall_s=WALL_S)
    for action in operator_actions([v for t, _, v in live if t == "risk.audit"]):
        if action["ts_ms"] >= report.as_of_ms:  # not in the checkpoint: re-applied by the replay
            restarted.schedule_operator(action)
    resumed = WALL_S + recovery_s
    partitioned = [e for e in events[cut:kill] if e[0] != "mev.market.ticks"]
    replayed = _offer(restarted, partitioned, resumed)  # bootstrap_inputs, before the market feed
    # then the market feed, from the checkpoint's ticks offsets, and the inputs arriving live
    replayed += _offer(restarted, [e for e in events[cut:kill] if e[0] == "mev.market.ticks"], resumed)
    replayed += _offer(restarted, events[kill:], resumed)
    replayed += restarted.drain()

    assert restarted.stats.late == 0, "no tick arrives after the replayed positions moved the clock"
    again = [v for t, _, v in replayed if t == "risk.audit" and v["payload"]["transition"] == "acknowledged"]
    assert [(v["seq"], v["hash"]) for v in again] == [(v["seq"], v["hash"]) for v in acked]
    assert replayed == live

"""Checkpoint, restore into a fresh pipeline, carry on: the outputs equal the uninterrupted run's."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from typing import Any

import pytest

from agents.assembly import build_pipeline
from agents.audit.chain import verify_chains
from agents.pipeline import Output, RiskPipeline
from agents.state import partitions_of, restore, take
from agents.state.codec import pickled, unpickle
from agents.state.envelope import open_blob
from tests.unit.state.conftest import OPTIONS, SECRET, START_MS, Event, feed


def _offsets(offered: list[Event]) -> dict[tuple[str, int], int]:
    """Next offset per input (topic, partition): how many records of it were offered."""
    return dict(Counter((topic, partition) for topic, _, partition in offered))


def _resume(events: list[Event], offsets: dict[tuple[str, int], int]) -> list[Event]:
    """What a worker reads after seeking every input to ``offsets``: each input from there on."""
    seen: Counter[tuple[str, int]] = Counter()
    rest = []
    for event in events:
        source = (event[0], event[2])
        if seen[source] >= offsets.get(source, 0):
            rest.append(event)
        seen[source] += 1
    return rest


@pytest.mark.parametrize("cut_s", [60, 100])
def test_restore_mid_stream_continues_exactly(events: list[Event], reference: list[Output],
                                              cut_s: int) -> None:
    """Taken between two offers (events buffered, alerts pending and firing, halts in force); the
    restored pipeline resumes every input at the checkpoint's offsets."""
    cut = next(i for i, (_, value, _) in enumerate(events) if value["ts_ms"] >= START_MS + cut_s * 1000)
    before = build_pipeline(OPTIONS)
    out_before = feed(before, events[:cut])
    blobs = take(before, partitions_of(before), secret=SECRET, offsets=_offsets(events[:cut]))
    assert set(blobs) == {"market", "p0", "p1"}
    assert before._heap and before.alerts._states and before.kill_switch._states

    after = build_pipeline(OPTIONS)
    report = restore(after, blobs, secret=SECRET)
    assert report.offsets == _offsets(events[:cut])
    assert report.buffered_events == len(before._heap) > 0
    assert report.models == "restored" and report.alert_states == len(before.alerts._states)
    assert after.watermark_ms == before.watermark_ms
    out_after = feed(after, _resume(events, report.offsets)) + after.drain()

    assert after.stats.late == 0
    assert out_before + out_after == reference  # snapshots (models' blocks too), alerts, controls, audit
    assert {t for t, _, _ in out_after} >= {"risk.snapshots", "risk.alerts", "risk.audit"}
    audit = [v for t, _, v in out_before + out_after if t == "risk.audit"]
    assert all(ok for ok, _, _ in verify_chains(audit).values())


def test_restore_at_a_bar_boundary(events: list[Event], reference: list[Output]) -> None:
    """Every event before T offered, the clock moved to T (bar T closed): nothing is buffered, and the
    events from T on are offered to the restored pipeline (none of them is late)."""
    bar_t = START_MS + 75_000
    before = build_pipeline(OPTIONS)
    out_before = feed(before, [e for e in events if e[1]["ts_ms"] < bar_t]) + before.heartbeat(bar_t)
    assert before.watermark_ms == bar_t and not before._heap
    assert any(t == "risk.snapshots" and v["ts_ms"] == bar_t for t, _, v in out_before), "bar T closed"
    blobs = take(before, partitions_of(before), secret=SECRET)

    after = build_pipeline(OPTIONS)
    report = restore(after, blobs, secret=SECRET)
    assert report.as_of_ms == bar_t and report.buffered_events == 0
    out_after = feed(after, [e for e in events if e[1]["ts_ms"] >= bar_t]) + after.drain()
    assert after.stats.late == 0
    assert out_before + out_after == reference


def test_operator_state_and_scheduled_actions_survive(events: list[Event]) -> None:
    """Acknowledged alerts, silences, operator halts and an operator action still waiting in the
    buffer are checkpointed: the restored run equals a deep copy of the original that carried on."""
    cut = len(events) // 2
    live = build_pipeline(OPTIONS)
    feed(live, events[:cut])
    firing = [a for a in live.alerts.alerts() if a.status == "firing"]
    assert firing, "the incidents have fired alerts by now"
    live.acknowledge(firing[0].id, "oncall-1", "looking")
    now = live.watermark_ms
    live.add_silence({"alertname": "StaleFeed"}, now, now + 30_000, "oncall-1", "noisy")
    live.command("portfolio:beta", "REDUCE", "oncall-1", "manual")
    live.command("global", "HALT", "oncall-2", "drill")
    live.schedule_operator({"kind": "command", "scope": "global", "command": "RESUME", "actor": "oncall-2",
                            "reason": "drill over", "ts_ms": live.watermark_ms + 20_000, "audit_order": 7})
    blobs = take(live, partitions_of(live), secret=SECRET)
    uninterrupted = _copy(live)

    restored = build_pipeline(OPTIONS)
    restore(restored, blobs, secret=SECRET)
    assert restored.kill_switch.to_dict() == live.kill_switch.to_dict()
    assert [s.to_dict() for s in restored.alerts.silences()] == [s.to_dict() for s in live.alerts.silences()]
    assert [s.to_dict() for s in restored.alerts.alerts(True)] == [
        s.to_dict() for s in live.alerts.alerts(True)]
    expected = feed(uninterrupted, events[cut:]) + uninterrupted.drain()
    got = feed(restored, events[cut:]) + restored.drain()
    assert got == expected
    resumed = [v for t, _, v in got if t == "risk.controls" and v["command"] == "RESUME"]
    assert resumed, "the scheduled action ran"


def _copy(pipeline: RiskPipeline) -> RiskPipeline:
    """An independent copy that shares the compiled rules (CEL programs do not copy; they are immutable)."""
    ruleset = pipeline.alerts.ruleset
    shared = [ruleset, *ruleset.rules, *ruleset.plans.values()]
    return copy.deepcopy(pipeline, memo={id(o): o for o in shared})


def test_a_restored_pipeline_checkpoints_to_the_same_bytes(events: list[Event]) -> None:
    """Restore is complete for what take records: taking again right away gives the same documents."""
    before = build_pipeline(OPTIONS)
    feed(before, events[: len(events) // 3])
    blobs = take(before, partitions_of(before), secret=SECRET, offsets={("mev.positions", 0): 12})
    after = build_pipeline(OPTIONS)
    restore(after, blobs, secret=SECRET)
    again = take(after, partitions_of(after), secret=SECRET, offsets={("mev.positions", 0): 12})
    assert set(again) == set(blobs)
    for key in blobs:
        assert _canonical(again[key], key) == _canonical(blobs[key], key)


def _canonical(blob: bytes, key: str) -> dict[str, Any]:
    """The document, model pickles normalised (a pickle's memo layout changes over one round trip)."""
    _, doc = open_blob(blob, SECRET, key)
    models = [doc["tick_models"]] if doc.get("tick_models") else []
    for part in [*models, *(p for p in doc["portfolios"] if p["models"])]:
        field = "pickle" if part is doc.get("tick_models") else "models"
        part[field] = pickled(unpickle(part[field]))
    return doc


def test_without_models_and_with_wall_clock_idleness(events: list[Event]) -> None:
    """Models off; a live restore (wall_s) starts the restored sources' idle time at the restore."""
    options = dataclasses.replace(OPTIONS, models=False)
    head = [e for e in events if e[1]["ts_ms"] < START_MS + 40_000]
    uninterrupted = build_pipeline(options)
    reference = feed(uninterrupted, head) + uninterrupted.drain()
    before = build_pipeline(options)
    out_before = feed(before, head[: len(head) // 2])
    after = build_pipeline(options)
    report = restore(after, take(before, [0, 1], secret=SECRET), secret=SECRET, wall_s=100.0)
    assert report.models == "none" and after.models is None
    assert after._source_wall == dict.fromkeys(before._source_max, 100.0)
    assert out_before + feed(after, head[len(head) // 2:]) + after.drain() == reference

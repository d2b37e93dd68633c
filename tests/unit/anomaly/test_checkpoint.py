"""Per-part model checkpoints: restore + replay equals an uninterrupted run; refused parts start cold."""

from __future__ import annotations

import doctest
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from agents.anomaly import checkpoint
from agents.anomaly.checkpoint import (
    CHECKPOINT_MAGIC,
    TICKS_KEY,
    Checkpoint,
    ModelCheckpointer,
    is_due,
    portfolio_key,
    restore,
)
from agents.anomaly.models import STATE_VERSION, ModelBundle
from agents.assembly import PipelineOptions, build_pipeline
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

from .synth import T0_MS, portfolio_stream, tick_stream

STEP_MS = 1000
SECRET = b"unit-test-checkpoint-secret"


def _timeline(n_steps: int = 900) -> Iterator[tuple[int, str, Any]]:
    """(event time, kind, payload) in the pipeline's order: per step the watermark of the bar
    ending there, then its ticks, snapshots of two portfolios and an alert now and then."""
    ticks = tick_stream(seed=5, n_steps=n_steps, warmup_steps=150).events
    snaps = portfolio_stream(seed=5, n_steps=n_steps)
    per_step = len(ticks) // n_steps
    for step in range(n_steps):
        ts = T0_MS + step * STEP_MS
        yield ts, "watermark", ts
        for tick, _ in ticks[step * per_step : (step + 1) * per_step]:
            yield ts, "tick", tick
        for name in ("alpha", "beta"):
            yield ts, "snapshot", (name, dict(snaps[step], ts_ms=ts))
        if snaps[step]["var_95"] > 1.1 * 1.645 * 0.02 * snaps[step]["total_exposure"]:
            yield ts, "alert", ("alpha", ts, "HIGH")


def _apply(bundle: ModelBundle, kind: str, payload: Any) -> Any:
    if kind == "tick":
        score = bundle.on_tick(payload)
        return (score.key, score.score, score.is_anomaly)
    if kind == "snapshot":
        return bundle.on_snapshot(*payload)
    if kind == "alert":
        return bundle.on_alert(*payload)
    return bundle.advance(payload)


def _bundle() -> ModelBundle:
    return ModelBundle(seed=3, horizon_ms=120_000)


def _checkpoint_at(events: list, bar_end_ms: int) -> tuple[list[tuple[str, bytes]], list]:
    """Run a bundle to the start of bar ``bar_end_ms`` (every event before it), checkpoint it there
    the way the pipeline does; returns the records and the outputs of an uninterrupted run."""
    bundle, checkpointer, outputs = _bundle(), ModelCheckpointer(interval_ms=STEP_MS), []
    for ts, kind, payload in events:
        if kind == "watermark" and ts == bar_end_ms:
            checkpointer.on_bar(bundle, bar_end_ms, STEP_MS)
        outputs.append((ts, kind, _apply(bundle, kind, payload)))
    records = [(c.key, c.to_bytes(SECRET)) for c in checkpointer.drain()]
    return records, outputs


def test_restore_then_replay_of_everything_equals_an_uninterrupted_run() -> None:
    events = list(_timeline())
    cut_ms = T0_MS + 600 * STEP_MS
    records, uninterrupted = _checkpoint_at(events, cut_ms)
    assert sorted(k for k, _ in records) == ["portfolio:alpha", "portfolio:beta", "ticks"]

    restored = _bundle()
    report = restore(restored, records, SECRET)
    assert report.restored == dict.fromkeys(("ticks", "portfolio:alpha", "portfolio:beta"), cut_ms - 1)
    assert not report.refused
    # the recovery replays every event again, those the checkpoint holds included
    replayed = [(ts, kind, _apply(restored, kind, payload)) for ts, kind, payload in events]
    after = [o for o in replayed if o[0] >= cut_ms]
    assert after == [o for o in uninterrupted if o[0] >= cut_ms]
    uninterrupted_bundle = _bundle()
    for _, kind, payload in events:
        _apply(uninterrupted_bundle, kind, payload)
    assert restored.status() == uninterrupted_bundle.status()
    last = [o[2] for o in after if o[1] == "snapshot"][-1]
    assert last["portfolio_warm"] and last["forecaster_warm"]


def test_events_at_or_before_as_of_are_not_learned_again() -> None:
    events = list(_timeline(700))
    cut_ms = T0_MS + 500 * STEP_MS
    records, uninterrupted = _checkpoint_at(events, cut_ms)
    restored = _bundle()
    restore(restored, records, SECRET)
    before = restored.status()
    for ts, kind, payload in events:
        if ts < cut_ms:
            _apply(restored, kind, payload)
    assert restored.status() == before, "replaying what the checkpoint holds changes nothing"
    pairs = zip(reversed(events), reversed(uninterrupted), strict=True)
    last_alpha = next(out for (ts, kind, payload), (_, _, out) in pairs
                      if kind == "snapshot" and payload[0] == "alpha" and ts < cut_ms)
    seed_fields = ("anomaly_detection", "risk_classification")
    assert restored.predictions("alpha") == {k: last_alpha[k] for k in seed_fields}

    # without the as_of marks the replay learns those events a second time: scores drift
    twice = _bundle()
    restore(twice, records, SECRET)
    twice.ticks_as_of_ms = None
    for models in twice.portfolios.values():
        models.as_of_ms = None
    replayed = [(ts, kind, _apply(twice, kind, payload)) for ts, kind, payload in events]
    assert [o for o in replayed if o[0] >= cut_ms] != [o for o in uninterrupted if o[0] >= cut_ms]


def test_a_wrong_version_or_garbled_checkpoint_is_refused_and_the_models_start_cold() -> None:
    events = list(_timeline(300))
    records, _ = _checkpoint_at(events, T0_MS + 200 * STEP_MS)
    by_key = dict(records)
    head = len(CHECKPOINT_MAGIC)
    ticks = Checkpoint.from_bytes("ticks", by_key["ticks"], SECRET)
    newer = Checkpoint("ticks", ticks.as_of_ms, ticks.payload, STATE_VERSION + 1).to_bytes(SECRET)
    garbled = Checkpoint("portfolio:alpha", ticks.as_of_ms, b"\x78\x9c" + b"\x00" * 40).to_bytes(SECRET)
    original = by_key["ticks"]
    altered_version = original[:head] + struct.pack(">H", STATE_VERSION + 1) + original[head + 2:]
    bundle = _bundle()
    report = restore(bundle, [("ticks", newer), ("portfolio:alpha", garbled), ("portfolio:gamma", b"junk"),
                              ("portfolio:beta", by_key["portfolio:beta"])], SECRET)
    assert f"state version {STATE_VERSION + 1}" in report.refused["ticks"]
    assert "corrupt" in report.refused["portfolio:alpha"]
    assert "bad magic" in report.refused["portfolio:gamma"]
    assert set(report.restored) == {"portfolio:beta"}
    assert bundle.ticks.n_seen == 0 and bundle.ticks_as_of_ms is None, "tick models start cold"
    assert set(bundle.portfolios) == {"beta"}
    _apply(bundle, "snapshot", ("alpha", dict(portfolio_stream(seed=5, n_steps=1)[0], ts_ms=T0_MS)))
    assert bundle.portfolios["alpha"].anomaly.n_seen == 1, "a refused portfolio learns from scratch"
    assert "forged" in restore(_bundle(), [("ticks", altered_version)], SECRET).refused["ticks"]


class _Boom:
    """Unpickling this would run ``os.system`` (a pickle anyone could write to risk.models)."""

    def __reduce__(self) -> tuple[Any, ...]:
        import os
        return (os.system, ("echo pwned",))


def test_forged_bombed_or_malicious_checkpoints_are_refused_before_any_unpickle() -> None:
    events = list(_timeline(300))
    records, _ = _checkpoint_at(events, T0_MS + 200 * STEP_MS)
    genuine = dict(records)["ticks"]
    forged = Checkpoint.take("ticks", {"x": 1}, T0_MS + 300_000).to_bytes(b"an-attacker-secret-16+")
    report = restore(_bundle(), [("ticks", genuine), ("ticks", forged)], SECRET)
    assert "ticks" in report.restored, "a forged newer record does not shadow the genuine one"
    assert report.restored["ticks"] == T0_MS + 199_999
    import pickle
    import zlib
    malicious = Checkpoint("ticks", T0_MS, zlib.compress(pickle.dumps(_Boom()))).to_bytes(SECRET)
    assert "not allowed" in restore(_bundle(), [("ticks", malicious)], SECRET).refused["ticks"]
    bomb = Checkpoint("ticks", T0_MS, zlib.compress(b"\x00" * (checkpoint.MAX_PART_BYTES + 1), 9))
    assert "inflates past" in restore(_bundle(), [("ticks", bomb.to_bytes(SECRET))], SECRET).refused["ticks"]
    unsigned_then_forged = restore(_bundle(), [("ticks", forged)], SECRET)
    assert "forged" in unsigned_then_forged.refused["ticks"]


def test_the_last_record_of_a_key_wins_and_a_tombstone_deletes_it() -> None:
    events = list(_timeline(300))
    early, _ = _checkpoint_at(events, T0_MS + 100 * STEP_MS)
    late, _ = _checkpoint_at(events, T0_MS + 200 * STEP_MS)
    bundle = _bundle()
    report = restore(bundle, [*early, *late, ("portfolio:beta", None)], SECRET)
    assert report.restored == {"ticks": T0_MS + 199_999, "portfolio:alpha": T0_MS + 199_999}


def test_due_times_are_event_time_multiples_shifted_per_part() -> None:
    interval = 10_000
    ticks_due = [b for b in range(1000, 40_001, 1000) if is_due(TICKS_KEY, b, 1000, interval)]
    assert ticks_due == [10_000, 20_000, 30_000, 40_000]
    phases = {checkpoint.phase_ms(portfolio_key(f"p{i}"), interval) for i in range(20)}
    assert len(phases) > 10, "portfolios do not all pickle on the same bar"
    assert not is_due(TICKS_KEY, 10_000, 1000, 0), "interval 0 disables checkpoints"


def test_no_checkpoint_is_written_for_a_part_the_restored_state_is_newer_than() -> None:
    events = list(_timeline(300))
    records, _ = _checkpoint_at(events, T0_MS + 200 * STEP_MS)
    bundle = _bundle()
    restore(bundle, records, SECRET)
    checkpointer = ModelCheckpointer(interval_ms=STEP_MS)
    checkpointer.on_bar(bundle, T0_MS + 150 * STEP_MS, STEP_MS)
    checkpointer.on_bar(bundle, T0_MS + 200 * STEP_MS, STEP_MS)
    assert checkpointer.drain() == []
    checkpointer.on_bar(bundle, T0_MS + 201 * STEP_MS, STEP_MS)
    assert {c.key for c in checkpointer.drain()} == {"ticks", "portfolio:alpha", "portfolio:beta"}


def test_no_checkpoint_is_taken_while_catching_up_far_behind_the_input() -> None:
    bundle = _bundle()
    _apply(bundle, "snapshot", ("alpha", dict(portfolio_stream(seed=5, n_steps=1)[0], ts_ms=T0_MS)))
    checkpointer = ModelCheckpointer(interval_ms=10 * STEP_MS)
    bar = T0_MS + 10 * STEP_MS
    for head in (bar + 60 * STEP_MS, bar + 21 * STEP_MS):
        checkpointer.on_bar(bundle, bar, STEP_MS, head_ms=head)
        assert checkpointer.drain() == []
    checkpointer.on_bar(bundle, bar, STEP_MS, head_ms=bar + 20 * STEP_MS)
    assert TICKS_KEY in {c.key for c in checkpointer.drain()}


# -- through the pure pipeline, on the simulator ---------------------------------------------------
START_MS = 1_767_225_600_000


def _sim_events() -> list[tuple[str, dict]]:
    sim = Simulator(5, START_MS, 80, 150, [Incident.parse("flash-crash@70s/15s")])
    return [(ev.topic, ev.value) for ev in sim if isinstance(ev.value, dict)]


def test_pipeline_restart_from_checkpoints_scores_like_an_uninterrupted_run() -> None:
    events = _sim_events()
    options = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000, model_checkpoint_ms=20_000)
    reference = build_pipeline(options)
    published: list[Checkpoint] = []
    outputs = []
    crash_at = int(len(events) * 0.7)
    for i, (topic, value) in enumerate(events):
        outputs.extend(reference.offer(topic, value))
        if i < crash_at:
            assert reference.checkpoints is not None
            published.extend(reference.checkpoints.drain())
    outputs.extend(reference.drain())
    without = build_pipeline(PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000))
    plain = [o for t, v in events for o in without.offer(t, v)] + without.drain()
    assert outputs == plain, "taking checkpoints changes no output"

    restarted = build_pipeline(options)
    assert restarted.models is not None
    report = restore(restarted.models, [(c.key, c.to_bytes(SECRET)) for c in published], SECRET)
    assert TICKS_KEY in report.restored and len(report.restored) >= 2, report
    again = [o for t, v in events for o in restarted.offer(t, v)] + restarted.drain()

    def anomaly_after(outs: list, as_of: dict[str, int]) -> list:
        return [(v["portfolio"], v["ts_ms"], v["anomaly"]) for t, _, v in outs
                if t == "risk.snapshots" and v["ts_ms"] > as_of[portfolio_key(v["portfolio"])]]

    expected = anomaly_after(outputs, report.restored)
    assert len(expected) > 50
    assert anomaly_after(again, report.restored) == expected
    assert reference.models is not None
    assert restarted.models.status() == reference.models.status()


def test_doctests() -> None:
    assert doctest.testmod(checkpoint).failed == 0


@pytest.mark.parametrize("data", [b"", b"MEVRISK", CHECKPOINT_MAGIC])
def test_short_values_are_refused(data: bytes) -> None:
    report = restore(_bundle(), [("ticks", data)], SECRET)
    assert "bad magic" in report.refused["ticks"]

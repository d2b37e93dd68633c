"""Issue 11, property: the pure pipeline survives any hostile input mixed into a valid stream.

Driven as the offline replay drives it (``validate_bytes``, then ``offer``, then ``drain``), the
simulator's stream is fed with hostile batches (``tests.robustness.hostile``) inserted anywhere:

* no exception escapes, other than a ``ContractError`` whose reason is in ``DLQ_REASONS``;
* every message that must be rejected is: by the contract, or as a ``risk.dlq`` output with a reason;
* every step is bounded: at most a few seconds of wall time (a watchdog interrupts a stall) and a
  number of outputs proportional to the entities tracked times the bars the step crosses, plus a
  few per event it releases;
* the simulator's portfolios, strategies and sources publish what they publish when the valid
  stream is replayed alone (snapshots and alert events up to the valid stream's end; floats equal
  to 1e-9: a hostile event that names an asset first reorders the asset columns, hence sums).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import Output, RiskPipeline
from schemas.contracts import DLQ_REASONS, ContractError, validate_bytes
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident
from tests.robustness.hostile import (
    POSITIONS,
    SIM_PORTFOLIOS,
    SIM_SOURCES,
    SIM_STRATEGIES,
    Hostile,
    World,
    crafted,
    hostile_batches,
)

BAR_MS = 1_000
OPTIONS = PipelineOptions(bar_ms=BAR_MS, models=True)
START_MS = (int(time.time() * 1000) - 20 * 60_000) // BAR_MS * BAR_MS
"""Twenty minutes ago: inside the contract's window (after its floor, not ahead of the wall clock)."""
STEP_BUDGET_S = 5.0
"""Wall time one offer may take before the watchdog calls it a stall (a valid one takes < 5 ms)."""
DRAIN_BUDGET_S = 20.0
SIM_ENTITIES = frozenset(SIM_PORTFOLIOS + SIM_STRATEGIES + SIM_SOURCES)

PROPERTY_SETTINGS = settings(max_examples=20, deadline=None, print_blob=True,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                    HealthCheck.large_base_example])


@dataclass(frozen=True)
class Valid:
    topic: str
    value: bytes
    ts_ms: int


def _valid_stream() -> list[Valid]:
    incidents = [Incident.parse(spec) for spec in ("flash-crash@10s/10s", "feed-stall@5s/20s",
                                                    "revert-storm@5s/20s")]
    sim = Simulator(3, START_MS, 150, 40, incidents)
    return [Valid(ev.topic, orjson.dumps(ev.value), ev.ts_ms) for ev in sim if isinstance(ev.value, dict)]


VALID = _valid_stream()
VALID_END_MS = max(v.ts_ms for v in VALID)


class StepStalled(AssertionError):
    """A pipeline step ran past its wall-time budget."""


@contextlib.contextmanager
def watchdog(seconds: float, what: str) -> Iterator[None]:
    """Interrupt the enclosed step with ``StepStalled`` after ``seconds`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _fire(signum: int, frame: Any) -> None:
        raise StepStalled(f"{what} still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    """What a drive produced, and what it owes: rejections and dead letters."""

    outputs: list[Output] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    must_reject_accepted: list[Hostile] = field(default_factory=list)
    """Messages that passed the contract although they must be rejected: the pipeline owes a dead letter."""

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [v for t, _, v in self.outputs if t == topic]


def _entities(pipeline: RiskPipeline) -> int:
    admission = getattr(pipeline, "admission", None)
    strategies = len(getattr(admission, "strategies", ())) or 8
    return len(pipeline.risk.portfolios) + strategies + 8


def _step(pipeline: RiskPipeline, run: Run, topic: str, raw: bytes | None, hostile: Hostile | None) -> None:
    try:
        value = validate_bytes(topic, raw)
    except ContractError as error:
        assert error.reason in DLQ_REASONS, f"unknown reason {error.reason!r} for {hostile}"
        run.rejected[error.reason] += 1
        return
    if hostile is not None and hostile.must_reject:
        run.must_reject_accepted.append(hostile)
    before_ms, released = pipeline.watermark_ms, pipeline.stats.released
    with watchdog(STEP_BUDGET_S, f"offer of {hostile or topic}"):
        out = pipeline.offer(topic, value)
    bars = max(0, pipeline.watermark_ms - before_ms) // BAR_MS + 2
    bound = 8 * _entities(pipeline) * bars + 4 * (pipeline.stats.released - released + 1)
    assert len(out) <= bound, f"one offer of {hostile or topic} released {len(out)} outputs (> {bound})"
    run.outputs.extend(out)


def drive(valid: Sequence[Valid], batches: Sequence[tuple[int, list[Hostile]]]) -> Run:
    """Replay ``valid`` with each batch of hostile messages inserted before valid event ``slot``."""
    pipeline = build_pipeline(OPTIONS)
    run = Run()
    by_slot: dict[int, list[Hostile]] = {}
    for slot, messages in batches:
        by_slot.setdefault(slot, []).extend(messages)
    for i, event in enumerate(valid):
        for hostile in by_slot.get(i, ()):
            _step(pipeline, run, hostile.topic, hostile.value, hostile)
        _step(pipeline, run, event.topic, event.value, None)
    with watchdog(DRAIN_BUDGET_S, "drain"):
        run.outputs.extend(pipeline.drain())
    check_dead_letters(run)
    return run


def check_dead_letters(run: Run) -> None:
    letters = run.of("risk.dlq")
    for letter in letters:
        assert letter.get("reason") in DLQ_REASONS, f"dead letter without a known reason: {letter}"
        assert isinstance(letter.get("detail"), str)
    assert len(letters) >= len(run.must_reject_accepted), (
        f"{len(run.must_reject_accepted)} messages that must be rejected passed the contract, "
        f"{len(letters)} dead letters: {run.must_reject_accepted[:3]}")


def valid_view(outputs: Sequence[Output]) -> list[tuple[str, str, dict[str, Any]]]:
    """The simulator's own output up to the valid stream's end: snapshots of its portfolios, alert
    events of its portfolios, strategies and sources."""
    view = []
    for topic, key, value in outputs:
        if value.get("ts_ms", 0) > VALID_END_MS:
            continue
        ours = (key in SIM_PORTFOLIOS if topic == "risk.snapshots"
                else topic == "risk.alerts" and value.get("entity_id") in SIM_ENTITIES)
        if ours:
            view.append((topic, key, value))
    return view


def world_at(slot: int) -> World:
    recent = tuple(orjson.loads(v.value) for v in VALID[max(0, slot - 200): slot] if v.topic == POSITIONS)
    return World(ts_ms=VALID[slot].ts_ms, recent_positions=recent[-5:])


@pytest.fixture(scope="module")
def reference() -> list[tuple[str, str, dict[str, Any]]]:
    run = drive(VALID, [])
    assert not run.rejected, run.rejected
    view = valid_view(run.outputs)
    assert any(t == "risk.alerts" for t, _, _ in view), "the incidents raise alerts"
    return view


def same(a: Any, b: Any) -> bool:
    """Equal, floats up to 1e-9 relative: the order in which assets are first seen (by any portfolio)
    fixes the asset columns, hence the order of floating-point sums (last-bit differences)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _diff(got: list[Any], want: list[Any]) -> str:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if not same(g, w):
            keys = sorted(k for k in set(g[2]) | set(w[2]) if not same(g[2].get(k), w[2].get(k)))
            return f"first difference at output {i} ({g[0]} {g[1]} ts {g[2].get('ts_ms')}): fields {keys}"
    return f"{len(got)} outputs instead of {len(want)}"


@PROPERTY_SETTINGS
@given(batches=hostile_batches(world_at, len(VALID), neutral=True))
def test_hostile_input_leaves_the_simulators_portfolios_unchanged(reference, batches) -> None:
    run = drive(VALID, batches)
    got = valid_view(run.outputs)
    assert same(got, reference), _diff(got, reference)


@PROPERTY_SETTINGS
@given(batches=hostile_batches(world_at, len(VALID), neutral=False))
def test_any_hostile_input_is_processed_or_rejected_and_bounded(batches) -> None:
    """Also messages that may legitimately move the market (plausible ticks, re-deliveries)."""
    run = drive(VALID, batches)
    assert run.of("risk.snapshots"), "the valid stream still produces snapshots"


def _crafted_cases() -> list[Hostile]:
    return crafted(World(ts_ms=VALID[len(VALID) // 2].ts_ms), new_portfolios=0)


@pytest.mark.parametrize("case", _crafted_cases(), ids=lambda h: h.label)
def test_crafted_case_of_issue_11(reference, case: Hostile) -> None:
    """Each message that broke main (issue 11), mid-stream: rejected when it must be, and the
    simulator's output unchanged unless accepting it may legitimately change it."""
    run = drive(VALID, [(len(VALID) // 2, [case])])
    if not case.touches_valid:
        got = valid_view(run.outputs)
        assert same(got, reference), _diff(got, reference)


def test_many_new_portfolios_are_capped_and_leave_the_others_unchanged(reference) -> None:
    """3,000 portfolio names from one producer (issue 11, item 7): admitted up to the cap, the rest
    dead-lettered, the simulator's portfolios unchanged. Run with a small cap so it stays quick."""
    from agents.admission import AdmissionLimits

    options = PipelineOptions(bar_ms=BAR_MS, models=True, admission=AdmissionLimits(max_portfolios=40))
    pipeline = build_pipeline(options)
    run = Run()
    flood = [h for h in crafted(World(ts_ms=VALID[len(VALID) // 2].ts_ms), new_portfolios=3_000)
             if h.label == "new portfolio"]
    for i, event in enumerate(VALID):
        if i == len(VALID) // 2:
            for hostile in flood:
                _step(pipeline, run, hostile.topic, hostile.value, hostile)
        _step(pipeline, run, event.topic, event.value, None)
    with watchdog(DRAIN_BUDGET_S, "drain"):
        run.outputs.extend(pipeline.drain())
    letters = Counter(letter["reason"] for letter in run.of("risk.dlq"))
    assert letters["too_many_entities"] >= 3_000 - 40, letters
    assert len(pipeline.risk.portfolios) <= 40
    got = valid_view(run.outputs)
    assert same(got, reference), _diff(got, reference)

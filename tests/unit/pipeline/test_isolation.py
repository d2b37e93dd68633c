"""Fault isolation in the pure pipeline: one failing event or computation stays local."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agents.admission import AdmissionLimits
from agents.assembly import PipelineOptions, build_pipeline
from streams.sim.generator import Simulator
from tests.unit.pipeline.test_pipeline import _run

START_MS = 1_767_225_600_000
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)


def _events(duration_s: float = 40) -> list[tuple[str, dict]]:
    return [(ev.topic, ev.value) for ev in Simulator(5, START_MS, 150, duration_s)
            if isinstance(ev.value, dict)]


def _of(outputs: list[tuple[str, str, dict]], topic: str, key: str | None = None) -> list[dict]:
    return [v for t, k, v in outputs if t == topic and (key is None or k == key)]


@pytest.fixture(scope="module")
def events() -> list[tuple[str, dict]]:
    return _events()


@pytest.fixture(scope="module")
def reference(events) -> list[tuple[str, str, dict]]:
    return _run(build_pipeline(OPTIONS), events)


HEADLINE = ("ts_ms", "total_exposure_usd", "var_95_usd", "var_99_usd", "es_99_usd", "rating", "errors")


def _headlines(snapshots: list[dict]) -> list[tuple]:
    """Headline figures; an asset first seen in another order sums its legs in another order, so
    figures compare to 1e-9 relative."""
    return [tuple(pytest.approx(s.get(k), rel=1e-9) if isinstance(s.get(k), float) else s.get(k)
                  for k in HEADLINE) for s in snapshots]


def _failing(method: Any, portfolio: str, stop_after_ms: int | None = None) -> Any:
    """Wrap ``method(rec_or_portfolio, ...)`` to raise for ``portfolio`` (until ``stop_after_ms``)."""
    def wrapper(first: Any, *args: Any, **kw: Any) -> Any:
        name = first.get("portfolio") if isinstance(first, dict) else first
        ts = first.get("ts_ms") if isinstance(first, dict) else args[0]
        if name == portfolio and (stop_after_ms is None or ts < stop_after_ms):
            raise ValueError("math domain error")
        return method(first, *args, **kw)
    return wrapper


def test_a_position_that_raises_is_dead_lettered_and_marks_only_its_portfolio(events, reference) -> None:
    pipeline = build_pipeline(OPTIONS)
    cut = START_MS + 20_000
    pipeline.risk.on_position = _failing(pipeline.risk.on_position, "alpha", stop_after_ms=cut)
    out = _run(pipeline, events)

    letters = _of(out, "risk.dlq")
    assert letters and {d["reason"] for d in letters} == {"processing_error"}
    assert {d["entity"] for d in letters} == {"alpha"}
    assert {d["error_type"] for d in letters} == {"ValueError"}
    assert pipeline.stats.processing_errors == {"position": len(letters)}
    # beta never noticed
    expected = _headlines(_of(reference, "risk.snapshots", "beta"))
    assert expected == _headlines(_of(out, "risk.snapshots", "beta"))
    # alpha is errored until its next valid event, then recovers
    alpha = _of(out, "risk.snapshots", "alpha")
    assert any(s["errors"] for s in alpha if s["ts_ms"] < cut)
    assert not alpha[-1]["errors"]
    fired = [a for a in _of(out, "risk.alerts") if a["rule"] == "RiskComputationFailed"]
    assert fired and fired[0]["entity_id"] == "alpha" and fired[0]["transition"] == "firing"


def test_a_snapshot_that_raises_yields_an_errored_snapshot_and_others_carry_on(events, reference) -> None:
    pipeline = build_pipeline(OPTIONS)
    pipeline.risk.snapshot = _failing(pipeline.risk.snapshot, "beta")
    out = _run(pipeline, events)

    beta = _of(out, "risk.snapshots", "beta")
    assert beta and all(s["errors"][0]["stage"] == "snapshot" for s in beta)
    assert all("var_95_usd" not in s for s in beta)  # unavailable, not made up
    expected = _headlines(_of(reference, "risk.snapshots", "alpha"))
    assert expected == _headlines(_of(out, "risk.snapshots", "alpha"))
    assert pipeline.stats.processing_errors["snapshot"] == len(beta)


def test_a_model_that_raises_keeps_the_risk_figures(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    assert pipeline.models is not None

    def broken(*_: Any, **__: Any) -> Any:
        raise OverflowError("math range error")
    pipeline.models.on_snapshot = broken  # type: ignore[method-assign]
    out = _run(pipeline, events)
    bar_snapshots = [s for s in _of(out, "risk.snapshots") if s["ts_ms"] % 1000 == 0]
    assert bar_snapshots and all("var_95_usd" in s and "anomaly" not in s for s in bar_snapshots)
    assert all(s["errors"] == [{"stage": "models", "error": "OverflowError", "detail": "math range error"}]
               for s in bar_snapshots)


def test_a_non_finite_figure_is_unavailable_with_a_reason(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    original = pipeline.risk.snapshot

    def nan_var(portfolio: str, ts_ms: int, **kw: Any) -> dict:
        snapshot = original(portfolio, ts_ms, **kw)
        snapshot["var_95_usd"] = float("nan")
        return snapshot
    pipeline.risk.snapshot = nan_var  # type: ignore[method-assign]
    snapshot = _of(_run(pipeline, events), "risk.snapshots")[-1]
    assert snapshot["var_95_usd"] is None
    assert snapshot["errors"][-1]["error"] == "NonFinite" and "var_95_usd" in snapshot["errors"][-1]["detail"]


def test_portfolio_cap_dead_letters_new_names_and_keeps_the_first(events) -> None:
    options = PipelineOptions(bar_ms=1000, admission=AdmissionLimits(max_portfolios=1))
    pipeline = build_pipeline(options)
    out = _run(pipeline, events)
    letters = _of(out, "risk.dlq")
    assert letters and {d["reason"] for d in letters} == {"too_many_entities"}
    first = min((v["ts_ms"], t, v["portfolio"]) for t, v in events if "portfolio" in v)[2]
    assert {s["portfolio"] for s in _of(out, "risk.snapshots")} == {first}  # first seen in event time
    assert set(pipeline.risk.portfolios) == {first}


def test_an_empty_stretch_of_bars_is_crossed_in_constant_time(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    _run(pipeline, events[:2000])
    far = dict(next(v for t, v in events if t == "mev.market.ticks"))
    far["ts_ms"] = pipeline.watermark_ms + 10**12  # 30 years of 1 s bars
    started = time.process_time()
    out = pipeline.offer("mev.market.ticks", far) + pipeline.drain()
    assert time.process_time() - started < 5.0  # a bar-by-bar walk would take hours
    assert pipeline.stats.skipped_bars > 10**8
    assert len(_of(out, "risk.snapshots")) < 10 * pipeline.max_skip_bars

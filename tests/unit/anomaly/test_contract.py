"""One contract suite over every scorer in ``agents.anomaly`` (STYLE 3).

Each case says how to build a scorer from a seed, how to feed it the i-th event
of a fixed stream (its ``learn`` step) and which probe to score.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from agents.anomaly.detectors import HalfSpaceTreesScorer, RobustZScorer
from agents.anomaly.forecast import AlertForecaster
from agents.anomaly.portfolio import PortfolioAnomalyScorer, snapshot_features
from agents.anomaly.ticks import TickAnomalyDetector
from agents.anomaly.varcast import VarForecaster

from .synth import portfolio_stream, tick_stream

TICKS = [t for t, _ in tick_stream(seed=3, n_steps=600, warmup_steps=100).events]
SNAPSHOTS = portfolio_stream(seed=5, n_steps=4000)


def _flat(i: int) -> dict[str, float]:
    rng = np.random.default_rng(i)
    return {"a": float(rng.normal()), "b": float(rng.normal(10, 2)), "c": float(rng.exponential())}


def _forecast_learn(model: AlertForecaster, i: int) -> None:
    snap = SNAPSHOTS[i % len(SNAPSHOTS)]
    ts = i * 60_000
    model.observe(ts, snapshot_features(snap))
    if snap["var_95"] > 1.1 * 1.645 * 0.02 * snap["total_exposure"]:
        model.record_alert(ts + 1, "HIGH")
    model.advance(ts + 1)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], Any]
    learn: Callable[[Any, int], None]
    probe: Callable[[int], dict[str, Any]]


CASES = [
    Case(
        "ticks_robust_z",
        lambda seed: TickAnomalyDetector(seed=seed, warmup=30),
        lambda m, i: m.learn_one(TICKS[i % len(TICKS)]),
        lambda i: TICKS[i % len(TICKS)],
    ),
    Case(
        "ticks_hst",
        lambda seed: TickAnomalyDetector(seed=seed, warmup=30, method="hst"),
        lambda m, i: m.learn_one(TICKS[i % len(TICKS)]),
        lambda i: TICKS[i % len(TICKS)],
    ),
    Case(
        "portfolio",
        lambda seed: PortfolioAnomalyScorer(seed=seed, warmup=30),
        lambda m, i: m.learn_one(SNAPSHOTS[i % len(SNAPSHOTS)]),
        lambda i: SNAPSHOTS[i % len(SNAPSHOTS)],
    ),
    Case(
        "robust_z",
        lambda seed: RobustZScorer(),
        lambda m, i: m.learn_one(_flat(i)),
        _flat,
    ),
    Case(
        "hst",
        lambda seed: HalfSpaceTreesScorer(seed=seed, window_size=50),
        lambda m, i: m.learn_one(_flat(i)),
        _flat,
    ),
    Case(
        "alert_forecast",
        lambda seed: AlertForecaster(seed=seed, horizon_ms=15 * 60_000, warmup=30),
        _forecast_learn,
        lambda i: snapshot_features(SNAPSHOTS[i % len(SNAPSHOTS)]),
    ),
    Case(
        "var_forecast",
        lambda seed: VarForecaster(seed=seed, warmup=30),
        lambda m, i: m.learn_one(SNAPSHOTS[i % len(SNAPSHOTS)]),
        lambda i: SNAPSHOTS[i % len(SNAPSHOTS)],
    ),
]
IDS = [c.name for c in CASES]


def _run(model: Any, case: Case, start: int, stop: int) -> list[float]:
    scores = []
    for i in range(start, stop):
        scores.append(model.score_one(case.probe(i + 1)))
        case.learn(model, i)
    return scores


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_score_defined_before_learning(case: Case) -> None:
    score = case.make(0).score_one(case.probe(0))
    assert isinstance(score, float) and math.isfinite(score) and 0.0 <= score <= 1.0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_scores_in_unit_interval(case: Case) -> None:
    scores = _run(case.make(0), case, 0, 400)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pickle_round_trip_gives_identical_scores(case: Case) -> None:
    model = case.make(1)
    _run(model, case, 0, 300)
    clone = pickle.loads(pickle.dumps(model))
    assert _run(model, case, 300, 500) == _run(clone, case, 300, 500)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_seed_same_scores(case: Case) -> None:
    assert _run(case.make(7), case, 0, 300) == _run(case.make(7), case, 0, 300)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_input_not_mutated(case: Case) -> None:
    model = case.make(2)
    for i in range(200):
        x = case.probe(i)
        before = copy.deepcopy(x)
        model.score_one(x)
        assert x == before
        if hasattr(model, "process_one"):
            model.process_one(x)
        elif isinstance(model, AlertForecaster):
            model.observe(i * 60_000, x)
            model.advance(i * 60_000)
        else:
            model.learn_one(x)
        assert x == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_memory_is_bounded(case: Case) -> None:
    model = case.make(3)
    for i in range(1000):
        case.learn(model, i)
    size_1k = len(pickle.dumps(model))
    for i in range(1000, 4000):
        case.learn(model, i)
    size_4k = len(pickle.dumps(model))
    print(f"{case.name}: pickle bytes after 1000 learns={size_1k} after 4000={size_4k}")
    assert size_4k <= 1.1 * size_1k + 4096


# Base detectors have no warm-up of their own: the scorers wrapping them do.
WARM_CASES = [c for c in CASES if c.name not in ("robust_z", "hst")]


@pytest.mark.parametrize("case", WARM_CASES, ids=[c.name for c in WARM_CASES])
def test_warm_up_is_reported(case: Case) -> None:
    model = case.make(4)
    assert model.is_warm is False
    for i in range(2000):
        case.learn(model, i)
    assert model.is_warm is True

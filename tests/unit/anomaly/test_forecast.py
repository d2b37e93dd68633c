"""Alert forecaster: skill over the no-skill baseline, and no label leakage."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agents.anomaly.forecast import AlertForecaster

STEP_MS = 60_000
HORIZON_MS = 15 * STEP_MS


def _exact_auc(y: list[bool], p: list[float]) -> float:
    """Rank (Mann-Whitney) ROC AUC with ties counted half."""
    ya, pa = np.asarray(y), np.asarray(p)
    pos, neg = pa[ya], pa[~ya]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _simulate(forecaster: Any, seed: int, n_steps: int) -> tuple[list[int], list[int]]:
    """Latent AR(1) risk drives both the observed features and the alert hazard.

    Returns the event times of the features and of the HIGH/CRITICAL alerts.
    """
    rng = np.random.default_rng(seed)
    latent, cooldown = 0.0, 0
    feature_ts, alert_ts = [], []
    for i in range(n_steps):
        ts = i * STEP_MS
        latent = 0.97 * latent + 0.25 * rng.standard_normal()
        x = {
            "total_risk": 0.3 + 0.1 * latent + 0.03 * rng.standard_normal(),
            "var_95": 1000.0 * math.exp(0.3 * latent + 0.1 * rng.standard_normal()),
            "noise": float(rng.standard_normal()),
        }
        forecaster.observe(ts, x)
        feature_ts.append(ts)
        if cooldown <= 0 and rng.random() < 1.0 / (1.0 + math.exp(-(2.0 * latent - 5.0))):
            severity = "HIGH" if rng.random() < 0.7 else "CRITICAL"
            forecaster.record_alert(ts + 1, severity)
            alert_ts.append(ts + 1)
            cooldown = 10
        elif rng.random() < 0.01:
            forecaster.record_alert(ts + 1, "MEDIUM")  # never a positive label
        cooldown -= 1
        forecaster.advance(ts + 1)  # watermark: the latest event time seen
    return feature_ts, alert_ts


def test_forecaster_beats_no_skill_baseline() -> None:
    forecaster = AlertForecaster(horizon_ms=HORIZON_MS, warmup=200)
    ys: list[bool] = []
    ps: list[float] = []
    original_learn = forecaster._learn

    def spy(item: Any, max_rank: int) -> None:
        ys.append(max_rank >= forecaster.min_rank)
        ps.append(item.p_model)
        original_learn(item, max_rank)

    forecaster._learn = spy  # type: ignore[method-assign]
    _simulate(forecaster, seed=3, n_steps=20_000)
    status = forecaster.status()
    exact = _exact_auc(ys[200:], ps[200:])
    print(
        f"\nforecast: labelled={status['samples_labelled']} base_rate={status['base_rate']:.3f} "
        f"roc_auc(river)={status['roc_auc']:.3f} roc_auc(exact, after warm-up)={exact:.3f} "
        f"baseline_roc_auc={status['baseline_roc_auc']:.3f} log_loss={status['log_loss']:.4f} "
        f"baseline_log_loss={status['baseline_log_loss']:.4f} skill={status['log_loss_skill']:.3f}"
    )
    assert status["roc_auc"] >= 0.65
    assert exact >= 0.65
    assert status["log_loss"] < status["baseline_log_loss"]
    assert abs(status["baseline_roc_auc"] - 0.5) < 0.1


class _Spy:
    """Stands in for the River model and records every learn call with the watermark."""

    def __init__(self) -> None:
        self.forecaster: AlertForecaster | None = None
        self.calls: list[tuple[dict[str, float], bool, int]] = []

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        return {True: 0.5, False: 0.5}

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        assert self.forecaster is not None and self.forecaster.watermark_ms is not None
        self.calls.append((dict(x), y, self.forecaster.watermark_ms))


def test_labels_are_only_learned_after_their_horizon_passed() -> None:
    spy = _Spy()
    forecaster = AlertForecaster(horizon_ms=HORIZON_MS, model=spy)
    spy.forecaster = forecaster

    # Tag features with their event time so the spy's calls can be checked.
    class Tagging:
        def observe(self, ts: int, x: dict[str, float]) -> float:
            return forecaster.observe(ts, {**x, "t": float(ts)})

        def record_alert(self, ts: int, severity: str) -> None:
            forecaster.record_alert(ts, severity)

        def advance(self, wm: int) -> int:
            return forecaster.advance(wm)

    feature_ts, alert_ts = _simulate(Tagging(), seed=5, n_steps=3000)
    assert len(spy.calls) == sum(1 for t in feature_ts if t + HORIZON_MS <= 3000 * STEP_MS - STEP_MS + 1)
    alerts = np.asarray(alert_ts)
    for x, y, watermark in spy.calls:
        t = int(x["t"])
        assert t + HORIZON_MS <= watermark, "learned before the horizon passed"
        truth = bool(((alerts > t) & (alerts <= t + HORIZON_MS)).any())
        assert y == truth
    assert any(y for _, y, _ in spy.calls) and not all(y for _, y, _ in spy.calls)


def test_label_window_is_open_at_start_closed_at_horizon() -> None:
    f = AlertForecaster(horizon_ms=1000, model=_Spy())
    f.model.forecaster = f
    for t in (0, 10, 20):
        f.observe(t, {"t": float(t)})
    f.record_alert(10, "HIGH")  # not in (10, 1010] but in (0, 1000]
    f.record_alert(1020, "CRITICAL")  # exactly t + H for t = 20
    assert f.advance(1009) == 1  # only t=0 has its horizon passed
    assert f.advance(1020) == 2
    assert [(c[0]["t"], c[1]) for c in f.model.calls] == [(0.0, True), (10.0, False), (20.0, True)]


def test_status_and_risk_level_probabilities_are_defined_before_learning() -> None:
    f = AlertForecaster()
    probs = f.level_probabilities({"x": 1.0})
    assert set(probs) == {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert math.isclose(sum(probs.values()), 1.0)
    assert f.status()["samples_labelled"] == 0 and f.status()["log_loss_skill"] == 0.0


def test_stale_features_are_not_buffered() -> None:
    f = AlertForecaster(horizon_ms=1000)
    f.advance(5000)
    f.observe(3000, {"x": 1.0})
    assert f.pending == 0 and f.stale_features == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_horizon_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        AlertForecaster(horizon_ms=bad)

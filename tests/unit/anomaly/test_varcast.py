"""VaR forecaster: output shape, interval coverage and accuracy against naive."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.anomaly.errors import InvalidFeatureInput
from agents.anomaly.varcast import VarForecaster


def _var_series(seed: int, n: int) -> list[float]:
    """log VaR = AR(1) around log(10 000 USD) plus a slow drift and noise."""
    rng = np.random.default_rng(seed)
    level, out = 0.0, []
    for i in range(n):
        level = 0.95 * level + 0.08 * rng.standard_normal()
        out.append(10_000.0 * math.exp(level + 0.3 * math.sin(i / 200.0)))
    return out


def test_forecast_shape_and_seven_periods() -> None:
    f = VarForecaster()
    for v in _var_series(1, 100):
        f.learn_one({"var_95": v})
    out = f.forecast()
    assert out["horizon"] == 7
    assert all(len(out[k]) == 7 for k in ("forecast", "lower_95", "upper_95"))
    assert all(
        lo <= mid <= hi for lo, mid, hi in zip(out["lower_95"], out["forecast"], out["upper_95"], strict=True)
    )
    assert all(lo >= 0 for lo in out["lower_95"])
    assert f.forecast(3)["horizon"] == 3


def test_interval_coverage_and_accuracy() -> None:
    series = _var_series(2, 4000)
    f = VarForecaster()
    hits = {1: 0, 7: 0}
    total = {1: 0, 7: 0}
    abs_err, naive_err = [], []
    for i, v in enumerate(series):
        if i >= 500 and i + 7 < len(series):
            out = f.forecast()
            for h in (1, 7):
                actual = series[i + h - 1]
                total[h] += 1
                hits[h] += out["lower_95"][h - 1] <= actual <= out["upper_95"][h - 1]
            abs_err.append(abs(math.log(out["forecast"][6]) - math.log(series[i + 6])))
            naive_err.append(abs(math.log(series[i - 1]) - math.log(series[i + 6])))
        f.learn_one({"var_95": v})
    cov1, cov7 = hits[1] / total[1], hits[7] / total[7]
    mae, naive = float(np.mean(abs_err)), float(np.mean(naive_err))
    print(
        f"\nvarcast: coverage_95 h=1 {cov1:.3f} h=7 {cov7:.3f}; "
        f"h=7 MAE(log) model={mae:.4f} naive(last value)={naive:.4f}"
    )
    assert 0.90 <= cov1 <= 0.99
    assert 0.88 <= cov7 <= 0.99
    assert mae <= naive * 1.05


def test_bad_input_is_a_clear_error() -> None:
    f = VarForecaster()
    with pytest.raises(InvalidFeatureInput, match="var_95"):
        f.learn_one({"exposure": 1.0})
    with pytest.raises(InvalidFeatureInput):
        f.learn_one({"var_95": -1.0})
    with pytest.raises(ValueError):
        f.forecast(8)

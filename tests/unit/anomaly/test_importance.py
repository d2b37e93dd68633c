"""Feature importance of the risk-level classifier, and the seed features it is fed live."""

from __future__ import annotations

import doctest
import math
import random

import pytest

from agents.anomaly import importance
from agents.anomaly.forecast import AlertForecaster
from agents.anomaly.importance import level_model_importance, weight_importance
from agents.anomaly.models import ModelBundle


def _train(driver: str, n: int = 600, seed: int = 5) -> AlertForecaster:
    """A forecaster whose alert level depends on ``driver`` only; the other features are noise."""
    rng = random.Random(seed)
    f = AlertForecaster(horizon_ms=1_000)
    for i in range(n):
        x = {name: rng.gauss(0.0, 1.0) for name in ("gas_price_gwei", "liquidity_ratio", "volume_ratio")}
        t = i * 10_000
        f.observe(t, x)
        if x[driver] > 0.8:
            f.record_alert(t + 500, "CRITICAL")
        elif x[driver] > 0.0:
            f.record_alert(t + 500, "HIGH")
        f.advance(t + 1_000)
    return f


@pytest.mark.parametrize("driver", ["gas_price_gwei", "volume_ratio"])
def test_the_feature_that_drives_the_level_ranks_first(driver: str) -> None:
    ranked = level_model_importance(_train(driver).level_model)
    assert next(iter(ranked)) == driver
    assert ranked[driver] > 0.5, ranked
    assert math.isclose(sum(ranked.values()), 1.0)
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)


def test_importance_is_deterministic_and_empty_before_learning() -> None:
    assert level_model_importance(AlertForecaster().level_model) == {}
    a, b = _train("liquidity_ratio"), _train("liquidity_ratio")
    assert level_model_importance(a.level_model) == level_model_importance(b.level_model)


def test_weights_of_every_level_count() -> None:
    # a feature that only one level uses still counts; signs do not cancel
    got = weight_importance({"HIGH": {"a": 3.0, "b": 0.0}, "LOW": {"a": -3.0, "b": 2.0}})
    assert got == pytest.approx({"a": 0.75, "b": 0.25})


def test_status_exposes_each_portfolios_feature_importance() -> None:
    bundle = ModelBundle(horizon_ms=1_000)
    bundle.portfolios["desk"] = models = bundle.portfolio("desk")
    models.forecaster = _train("gas_price_gwei")
    block = bundle.status()["portfolios"]["desk"]["risk_classification"]
    assert next(iter(block["feature_importance"])) == "gas_price_gwei"
    assert block["samples_labelled"] == models.forecaster.n_labelled == sum(block["level_counts"].values())


def test_doctests() -> None:
    result = doctest.testmod(importance)
    assert result.failed == 0 and result.attempted > 0

"""Model bundle: restart equivalence, versioned checkpoints, seed-shaped outputs, status."""

from __future__ import annotations

import doctest
import pickle
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from agents.anomaly import detectors, forecast, models, portfolio, ticks, varcast
from agents.anomaly.checkpoint import Checkpoint
from agents.anomaly.errors import InvalidFeatureInput, ModelStateError
from agents.anomaly.models import BUNDLE_KEY, STATE_VERSION, ModelBundle

from .synth import portfolio_stream, tick_stream

SECRET = b"unit-test-model-secret"

RISK_LEVELS = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


def _events(n_steps: int = 1500) -> Iterator[tuple[str, Any]]:
    """Interleaved ticks, snapshots (two portfolios), alerts and watermarks."""
    tick_events = tick_stream(seed=9, n_steps=n_steps, warmup_steps=200).events
    snaps = portfolio_stream(seed=9, n_steps=n_steps)
    per_step = len(tick_events) // n_steps
    for step in range(n_steps):
        for tick, _ in tick_events[step * per_step : (step + 1) * per_step]:
            yield "tick", tick
        snap = dict(snaps[step], ts_ms=tick_events[step * per_step][0]["ts_ms"])
        yield "snapshot", ("alpha" if step % 2 else "beta", snap)
        if snap["var_95"] > 1.1 * 1.645 * 0.02 * snap["total_exposure"]:
            yield "alert", ("alpha", snap["ts_ms"] + 1, "HIGH")
        yield "watermark", snap["ts_ms"] + 1


def _apply(bundle: ModelBundle, kind: str, payload: Any) -> Any:
    if kind == "tick":
        return bundle.on_tick(payload)
    if kind == "snapshot":
        return bundle.on_snapshot(*payload)
    if kind == "alert":
        return bundle.on_alert(*payload)
    return bundle.advance(payload)


def test_scores_after_restart_match_an_uninterrupted_run() -> None:
    events = list(_events())
    cut = len(events) // 2
    uninterrupted = ModelBundle(seed=3, horizon_ms=10 * 60_000)
    restarted = ModelBundle(seed=3, horizon_ms=10 * 60_000)
    for kind, payload in events[:cut]:
        _apply(uninterrupted, kind, payload)
        _apply(restarted, kind, payload)
    blob = restarted.state_bytes(SECRET)
    del restarted
    restored = ModelBundle.from_state_bytes(blob, SECRET)
    after_a = [_apply(uninterrupted, k, p) for k, p in events[cut:]]
    after_b = [_apply(restored, k, p) for k, p in events[cut:]]
    assert after_a == after_b
    assert uninterrupted.status() == restored.status()
    snapshots = [o for o in after_a if isinstance(o, dict)]
    assert snapshots[-1]["forecaster_warm"] and snapshots[-1]["portfolio_warm"]
    print(f"\nrestart: {len(after_a)} events after restart identical; checkpoint {len(blob)} bytes")


def test_incompatible_version_is_refused_with_a_clear_error() -> None:
    payload = zlib.compress(pickle.dumps(ModelBundle(seed=1)))
    newer = Checkpoint(BUNDLE_KEY, -1, payload, STATE_VERSION + 1).to_bytes(SECRET)
    with pytest.raises(ModelStateError, match=f"state version {STATE_VERSION + 1}"):
        ModelBundle.from_state_bytes(newer, SECRET)


def test_foreign_forged_or_corrupt_state_is_refused() -> None:
    with pytest.raises(ModelStateError, match="magic"):
        ModelBundle.from_state_bytes(pickle.dumps(ModelBundle(seed=1)), SECRET)
    blob = ModelBundle(seed=1).state_bytes(SECRET)
    with pytest.raises(ModelStateError, match="forged"):
        ModelBundle.from_state_bytes(blob, b"another-secret-of-16+")
    with pytest.raises(ModelStateError, match="forged"):
        ModelBundle.from_state_bytes(blob[:-20], SECRET)
    corrupt = Checkpoint(BUNDLE_KEY, -1, zlib.compress(b"not a pickle")).to_bytes(SECRET)
    with pytest.raises(ModelStateError, match="corrupt"):
        ModelBundle.from_state_bytes(corrupt, SECRET)
    not_a_bundle = Checkpoint.take(BUNDLE_KEY, {"a": 1}, -1).to_bytes(SECRET)
    with pytest.raises(ModelStateError, match="dict"):
        ModelBundle.from_state_bytes(not_a_bundle, SECRET)


def test_seed_prediction_fields_and_status() -> None:
    bundle = ModelBundle(seed=2, horizon_ms=60_000)
    assert bundle.predictions("alpha") is None
    for kind, payload in _events(400):
        _apply(bundle, kind, payload)
    pred = bundle.predictions("alpha")
    assert pred is not None
    ad, rc = pred["anomaly_detection"], pred["risk_classification"]
    assert set(ad) == {"is_anomaly", "anomaly_score", "confidence", "risk_level"}
    assert ad["risk_level"] in RISK_LEVELS and 0.0 <= ad["confidence"] <= 1.0
    assert set(rc) == {"predicted_risk_level", "probability", "confidence", "all_probabilities"}
    assert set(rc["all_probabilities"]) == RISK_LEVELS
    assert abs(sum(rc["all_probabilities"].values()) - 1.0) < 1e-9
    status = bundle.status()
    assert status["models_loaded"] == 1 + 3 * 2
    assert status["ticks"]["warm"] and status["ticks"]["samples_seen"] > 0
    alpha = status["portfolios"]["alpha"]
    assert sum(alpha["anomaly"]["risk_level_distribution"].values()) > 0
    assert 0.0 <= alpha["anomaly"]["anomaly_rate_recent"] <= 1.0
    assert alpha["alert_forecast"]["samples_labelled"] > 0


@pytest.mark.parametrize(
    "tick",
    [
        {"kind": "price", "asset": "ETH", "ts_ms": 1, "price_usd": 0.0},
        {"kind": "price", "asset": "ETH", "ts_ms": 1},
        {"kind": "gas", "chain": "", "ts_ms": 1, "base_fee_gwei": 1.0},
        {"kind": "volume", "asset": "ETH", "ts_ms": 1},
        {"kind": "liquidity", "asset": "ETH", "ts_ms": "1", "depth_usd": 1.0, "spread_bps": 1.0},
        {"kind": "liquidity", "asset": "ETH", "ts_ms": 1, "depth_usd": float("nan"), "spread_bps": 1.0},
    ],
)
def test_invalid_ticks_raise_a_clear_error(tick: dict[str, Any]) -> None:
    bundle = ModelBundle()
    with pytest.raises(InvalidFeatureInput):
        bundle.on_tick(tick)
    with pytest.raises(InvalidFeatureInput):
        bundle.ticks.score_one(tick)


def test_max_keys_and_portfolios_bound_state() -> None:
    bundle = ModelBundle(max_portfolios=3, tick_params={"max_keys": 4})
    for i in range(10):
        bundle.on_tick({"kind": "price", "asset": f"A{i}", "ts_ms": i, "price_usd": 1.0})
        bundle.on_snapshot(f"p{i}", {"var_95": 1.0, "ts_ms": i})
    assert len(bundle.ticks.keys) == 4 and len(bundle.portfolios) == 3


@pytest.mark.parametrize("module", [detectors, ticks, portfolio, forecast, varcast, models])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0

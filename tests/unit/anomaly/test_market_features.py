"""The seed's market features feed the risk-level model live; tick anomaly scores reach the
snapshot's market block and ``/metrics``."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from agents.anomaly.errors import InvalidFeatureInput
from agents.anomaly.models import ModelBundle
from agents.anomaly.portfolio import MARKET_FEATURES, market_features, model_features
from agents.anomaly.ticks import TickAnomalyDetector, _KeyState
from agents.assembly import PipelineOptions, build_pipeline
from streams import metrics
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
SPIKE_S, SPIKE_LEN_S = 60, 15
HOUR_MS = 3_600_000


def _snapshot(ts_ms: int = START_MS, gas: float = 20.0, **market: Any) -> dict[str, Any]:
    return {"portfolio": "desk", "ts_ms": ts_ms, "var_95_usd": 100.0, "var_99_usd": 150.0,
            "total_exposure_usd": 10_000.0, "max_concentration": 0.4, "correlation_risk": 0.3,
            "exposure_by_chain": {"ethereum": 8_000.0, "arbitrum": 2_000.0},
            "market": {"gas_gwei": {"ethereum": {"mean": gas}, "arbitrum": {"mean": 0.1}},
                       "liquidity_ratio": 0.9, "correlation": 0.4, **market}}


# -- the features, from the snapshot and its market block ---------------------------------------
def test_market_features_come_from_the_market_block() -> None:
    f = market_features(_snapshot(gas=50.0, volume_ratio=1.7))
    expected_gas = (50.0 * 8_000.0 + 0.1 * 2_000.0) / 10_000.0  # weighted by the portfolio's chains
    assert f["gas_price_gwei"] == pytest.approx(__import__("math").log1p(expected_gas))
    assert (f["liquidity_ratio"], f["market_correlation"], f["volume_ratio"]) == (0.9, 0.4, 1.7)
    no_chain = _snapshot(gas=50.0)
    no_chain["exposure_by_chain"] = {"base": 1.0}  # no gas data where it holds: every chain's mean
    assert market_features(no_chain)["gas_price_gwei"] == pytest.approx(__import__("math").log1p(25.05))
    assert market_features({"var_95_usd": 1.0}) == {}
    with pytest.raises(InvalidFeatureInput, match="liquidity_ratio"):
        market_features(_snapshot(liquidity_ratio="low"))


def test_hour_of_day_comes_from_event_time_in_utc() -> None:
    midnight, six = model_features(_snapshot(START_MS)), model_features(_snapshot(START_MS + 6 * HOUR_MS))
    assert (midnight["hour_sin"], midnight["hour_cos"]) == pytest.approx((0.0, 1.0))
    assert (six["hour_sin"], six["hour_cos"]) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_market_features_change_the_risk_level_models_input_and_output() -> None:
    """Alerts follow market gas only; the classifier learns it through the live features."""
    bundle = ModelBundle(horizon_ms=1_000)
    bundle.on_tick({"kind": "liquidity", "asset": "ETH", "pool": "p", "ts_ms": START_MS - 1,
                    "depth_usd": 1e6, "spread_bps": 5.0, "volume_usd": 100.0})  # volume_ratio known
    for i in range(400):
        ts = START_MS + i * 10_000
        high = i % 3 == 0
        bundle.on_snapshot("desk", _snapshot(ts, gas=200.0 if high else 15.0))
        if high:
            bundle.on_alert("desk", ts + 500, "CRITICAL")
        bundle.advance(ts + 1_000)
    forecaster = bundle.portfolios["desk"].forecaster
    assert forecaster.n_labelled == 400
    calm = bundle.on_snapshot("desk", _snapshot(START_MS + 400 * 10_000, gas=15.0))
    spike = bundle.on_snapshot("desk", _snapshot(START_MS + 401 * 10_000, gas=200.0))
    assert set(MARKET_FEATURES) <= set(forecaster._pending[-1].x)  # what the model is fed
    assert calm["risk_classification"]["predicted_risk_level"] == "LOW"
    assert spike["risk_classification"]["predicted_risk_level"] == "CRITICAL"
    importance = bundle.status()["portfolios"]["desk"]["risk_classification"]["feature_importance"]
    assert next(iter(importance)) == "gas_price_gwei"


# -- live: the simulator through the pipeline ----------------------------------------------------
@pytest.fixture(scope="module")
def live() -> tuple[Any, list[dict[str, Any]]]:
    sim = Simulator(3, START_MS, 150, 90, [Incident.parse(f"gas-spike@{SPIKE_S}s/{SPIKE_LEN_S}s")])
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000))
    out = []
    for ev in sim:
        if isinstance(ev.value, dict):
            out.extend(pipeline.offer(ev.topic, ev.value, 0))
    out.extend(pipeline.drain())
    return pipeline, [value for topic, _, value in out if topic == "risk.snapshots"]


def test_live_snapshots_feed_the_seed_features_to_the_models(live: Any) -> None:
    pipeline, snapshots = live
    last = snapshots[-1]
    assert {"correlation", "volume_ratio", "liquidity_ratio", "gas_gwei"} <= set(last["market"])
    features = model_features(last)
    assert set(MARKET_FEATURES) | {"hour_sin", "hour_cos"} <= set(features)
    pending = pipeline.models.portfolios[last["portfolio"]].forecaster._pending
    assert pending and set(MARKET_FEATURES) <= set(pending[-1].x)


def test_the_gas_spike_shows_in_the_market_blocks_tick_anomaly(live: Any) -> None:
    _, snapshots = live
    chains = {"ethereum", "arbitrum"}
    assets = {s for snap in snapshots for s in snap["market"].get("tick_anomaly", {})} - chains
    assert assets and all(a.isupper() for a in assets)  # asset symbols, then the chains
    def ethereum(lo_s: int, hi_s: int) -> list[float]:
        return [s["market"]["tick_anomaly"]["ethereum"] for s in snapshots
                if lo_s * 1000 <= s["ts_ms"] - START_MS < hi_s * 1000
                and "ethereum" in s["market"].get("tick_anomaly", {})]
    before, during = ethereum(20, SPIKE_S), ethereum(SPIKE_S, SPIKE_S + 5)
    assert before and during
    assert max(during) >= 0.5 and max(during) > max(before)  # the spike tops everything before it
    for snap in snapshots:
        assert all(0.0 <= v <= 1.0 for v in snap["market"].get("tick_anomaly", {}).values())


def test_tick_anomaly_scores_reach_metrics(live: Any) -> None:
    _, snapshots = live
    snap = copy.deepcopy(snapshots[-1])
    scores = snap["market"]["tick_anomaly"]
    assert len(scores) >= 2
    metrics.observe_snapshot(snap)
    for asset, score in scores.items():
        assert metrics.REGISTRY.get_sample_value("mevrisk_tick_anomaly_score", {"asset": asset}) == score
    gone = sorted(scores)[0]
    del scores[gone]  # quiet for a minute: its series goes
    metrics.observe_snapshot(snap)
    assert metrics.REGISTRY.get_sample_value("mevrisk_tick_anomaly_score", {"asset": gone}) is None
    metrics.observe_tick_anomaly({})
    metrics.forget_portfolios(set())


# -- the tick state that carries them -------------------------------------------------------------
def test_recent_scores_are_warm_and_recent_and_volume_ratio_follows_volume() -> None:
    det = TickAnomalyDetector(warmup=3, volume_alpha=0.1)
    for i in range(3):  # warming up: not in the market view
        det.process_one({"kind": "liquidity", "asset": "ETH", "pool": "p", "ts_ms": i * 1000,
                         "depth_usd": 1e6, "spread_bps": 5.0, "volume_usd": 100.0})
    assert det.recent_scores(3_000, 60_000) == {} and det.volume_ratio() == pytest.approx(1.0)
    det.process_one({"kind": "liquidity", "asset": "ETH", "pool": "p", "ts_ms": 3_000,
                     "depth_usd": 1e6, "spread_bps": 5.0, "volume_usd": 300.0})
    assert set(det.recent_scores(3_000, 60_000)) == {"ETH"}
    assert det.recent_scores(63_001, 60_000) == {}
    assert det.volume_ratio() == pytest.approx(300.0 / 120.0)
    with pytest.raises(InvalidFeatureInput, match="volume_usd"):
        det.process_one({"kind": "liquidity", "asset": "ETH", "pool": "p", "ts_ms": 4_000,
                         "depth_usd": 1e6, "spread_bps": 5.0, "volume_usd": -1.0})


def test_tick_state_pickled_before_the_market_view_still_loads() -> None:
    det = TickAnomalyDetector(warmup=0)
    det.process_one({"kind": "price", "asset": "ETH", "ts_ms": 0, "price_usd": 2000.0})
    state = det._keys["price:ETH"]
    old_slots = {name: getattr(state, name) for name in ("detector", "extractor", "flag_run", "n_flagged",
                                                         "n_seen")}
    restored = _KeyState.__new__(_KeyState)
    restored.__setstate__((None, old_slots))  # what an older pickle holds
    assert (restored.last, restored.volume, restored.volume_ewma, restored.n_seen) == (None, None, None, 1)
    again = pickle.loads(pickle.dumps(state))
    assert again.last == state.last

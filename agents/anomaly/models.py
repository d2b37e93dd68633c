"""The model bundle: every online model of the service, its checkpoint and its status.

:class:`ModelBundle` holds the tick detector (market-wide, keyed by asset/chain)
and, per portfolio, a :class:`PortfolioModels` (snapshot anomaly scorer, alert
forecaster, VaR forecaster). The agent feeds it ticks, snapshots, alerts and the
watermark; it returns plain dicts ready for snapshots, Prometheus and the API.

Checkpoints: :meth:`ModelBundle.state_bytes` is the whole bundle (for tests and tools) in the
signed envelope of :class:`agents.anomaly.checkpoint.Checkpoint` (key ``bundle``): HMAC-SHA256
keyed by the worker secret, verified before anything is inflated (at most 32 MiB) or unpickled
(with the model class allowlist). The worker checkpoints by part
instead (:mod:`agents.anomaly.checkpoint`): :meth:`ModelBundle.tick_state` (market-wide)
and each :class:`PortfolioModels`, restored with :meth:`ModelBundle.install_ticks` /
:meth:`ModelBundle.install_portfolio` together with the event time ``as_of_ms`` they
include everything up to. Events at or before a part's ``as_of_ms`` then no longer
update that part (a replay after a restart must not learn them twice): ticks are
scored without learning, snapshots get a score-only block (:meth:`ModelBundle.on_snapshot`)
and alerts and watermarks at or before it are ignored.

:meth:`ModelBundle.from_state_bytes` refuses, with
:class:`~agents.anomaly.errors.ModelStateError` and a clear message, bytes whose tag does not
verify (forged, altered, or not written with this secret), another state version, an oversized
or corrupt payload, or anything but a bundle. Bump :data:`STATE_VERSION` whenever a model's
attributes change incompatibly; an old checkpoint is then refused and the models start cold (the
agent logs it) rather than running on garbled state.

Seed API fields (``GET /api/v1/predictions``) come from :func:`anomaly_detection`
and :func:`risk_classification`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any

from agents.anomaly.errors import ModelStateError
from agents.anomaly.forecast import RISK_LEVELS, AlertForecaster
from agents.anomaly.importance import level_model_importance
from agents.anomaly.portfolio import PortfolioAnomalyScorer, PortfolioScore, model_features
from agents.anomaly.ticks import TickAnomalyDetector, TickScore, tick_key
from agents.anomaly.varcast import VarForecaster

STATE_VERSION = 2
"""2: per-part checkpoints (``PortfolioModels.predictions`` / ``as_of_ms``, ``tick_predictions``)."""
BUNDLE_KEY = "bundle"
"""The key a whole bundle is signed under (:meth:`ModelBundle.state_bytes`)."""


# -- seed field mapping --------------------------------------------------------------
def anomaly_risk_level(score: float, threshold: float = 0.5) -> str:
    """LOW below half the threshold, MEDIUM below it, then HIGH, CRITICAL in the top half.

    >>> [anomaly_risk_level(s) for s in (0.1, 0.3, 0.6, 0.8)]
    ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL']
    """
    if score < 0.5 * threshold:
        return "LOW"
    if score < threshold:
        return "MEDIUM"
    return "HIGH" if score < threshold + 0.5 * (1.0 - threshold) else "CRITICAL"


def anomaly_detection(score: float, *, warm: bool, threshold: float = 0.5) -> dict[str, Any]:
    """Seed ``anomaly_detection`` block.

    ``confidence`` is the distance of the score from the threshold relative to the
    room on that side (0 at the threshold, 1 at 0 or 1), and 0 while not warm.

    >>> anomaly_detection(0.75, warm=True)["confidence"]
    0.5
    """
    room = threshold if score < threshold else 1.0 - threshold
    confidence = min(abs(score - threshold) / room, 1.0) if warm and room > 0 else 0.0
    return {
        "is_anomaly": bool(warm and score >= threshold),
        "anomaly_score": float(score),
        "confidence": float(confidence),
        "risk_level": anomaly_risk_level(score, threshold),
    }


def risk_classification(level_probabilities: dict[str, float]) -> dict[str, Any]:
    """Seed ``risk_classification`` block from P(level) over LOW..CRITICAL.

    ``probability`` is P(predicted level); ``confidence`` its margin over the runner-up.

    >>> r = risk_classification({"LOW": 0.7, "MEDIUM": 0.2, "HIGH": 0.1, "CRITICAL": 0.0})
    >>> r["predicted_risk_level"], r["probability"], round(r["confidence"], 2)
    ('LOW', 0.7, 0.5)
    """
    ranked = sorted(RISK_LEVELS, key=lambda lvl: -level_probabilities.get(lvl, 0.0))
    best, second = ranked[0], ranked[1]
    p_best = float(level_probabilities.get(best, 0.0))
    return {
        "predicted_risk_level": best,
        "probability": p_best,
        "confidence": p_best - float(level_probabilities.get(second, 0.0)),
        "all_probabilities": {lvl: float(level_probabilities.get(lvl, 0.0)) for lvl in RISK_LEVELS},
    }


# -- per-portfolio models ---------------------------------------------------------------
class PortfolioModels:
    """The models of one portfolio and the last prediction made for it."""

    def __init__(self, *, seed: int, horizon_ms: int, var_horizon: int, recent: int) -> None:
        self.anomaly = PortfolioAnomalyScorer(seed=seed)
        self.forecaster = AlertForecaster(horizon_ms=horizon_ms, seed=seed)
        self.varcast = VarForecaster(max_horizon=var_horizon, seed=seed)
        self.recent_flags: deque[bool] = deque(maxlen=recent)
        self.recent_levels: deque[str] = deque(maxlen=recent)
        self.last: dict[str, Any] | None = None
        self.predictions = 0
        self.as_of_ms: int | None = None
        """Restored from a checkpoint that includes every event up to this event time."""

    def covers(self, ts_ms: Any) -> bool:
        """True when a restored checkpoint already includes event time ``ts_ms``."""
        return self.as_of_ms is not None and isinstance(ts_ms, int) and ts_ms <= self.as_of_ms


class ModelBundle:
    """All online models, checkpointable as one blob.

    >>> b, secret = ModelBundle(seed=1), b"a-test-secret-of-16+"
    >>> restored = ModelBundle.from_state_bytes(b.state_bytes(secret), secret)
    >>> restored.status()["models_loaded"]
    1
    """

    tick_recent_ms = 60_000
    """A tick key's latest score is in the snapshot's ``market.tick_anomaly`` for this long (event time)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        horizon_ms: int = 15 * 60_000,
        var_horizon: int = 7,
        max_portfolios: int = 1000,
        recent: int = 500,
        tick_params: dict[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.horizon_ms = horizon_ms
        self.var_horizon = var_horizon
        self.max_portfolios = max_portfolios
        self.recent = recent
        self.ticks = TickAnomalyDetector(seed=seed, **(tick_params or {}))
        self.portfolios: OrderedDict[str, PortfolioModels] = OrderedDict()
        self.recent_tick_flags: deque[bool] = deque(maxlen=recent)
        self.total_predictions = 0
        self.tick_predictions = 0
        self.ticks_as_of_ms: int | None = None
        """Tick models restored from a checkpoint that includes every tick up to this event time."""

    # -- inputs -------------------------------------------------------------------------
    def on_tick(self, tick: dict[str, Any]) -> TickScore:
        """Score ``tick`` and learn it, unless a restored checkpoint already includes it
        (``ts_ms <= ticks_as_of_ms``): then it is only scored, and nothing is counted."""
        if self.ticks_as_of_ms is not None and tick.get("ts_ms", 0) <= self.ticks_as_of_ms:
            key, score = tick_key(tick), self.ticks.score_one(tick)
            warm = self.ticks.is_warm_key(key)
            return TickScore(key, score, warm and score >= self.ticks.threshold, warm, False, {})
        result = self.ticks.process_one(tick)
        if result.is_warm:
            self.recent_tick_flags.append(result.is_anomaly)
        self.total_predictions += 1
        self.tick_predictions += 1
        return result

    def portfolio(self, name: str) -> PortfolioModels:
        models = self.portfolios.get(name)
        if models is None:
            models = PortfolioModels(
                seed=self.seed,
                horizon_ms=self.horizon_ms,
                var_horizon=self.var_horizon,
                recent=self.recent,
            )
            self.portfolios[name] = models
            if len(self.portfolios) > self.max_portfolios:
                self.portfolios.popitem(last=False)
        else:
            self.portfolios.move_to_end(name)
        return models

    def on_snapshot(self, portfolio: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Score a risk snapshot; returns the ``ml`` block to attach to it.

        ``snapshot["ts_ms"]`` is the event time used for the alert forecast. A snapshot at or
        before the portfolio's restored ``as_of_ms`` (replayed after a restart; it was published
        before the crash) is scored by the restored models without learning: the block returned
        for it is what those models say now, not necessarily what was published then.
        """
        models = self.portfolio(portfolio)
        ts_ms = snapshot.get("ts_ms")
        self.add_market(snapshot)
        features = model_features(snapshot)
        has_var = any(k in snapshot for k in ("var_95", "var_95_usd"))
        if models.covers(ts_ms):
            peeked = models.anomaly.peek_one(snapshot)
            p_alert = models.forecaster.score_one(features)
            return self._ml_block(models, peeked, features, p_alert, has_var)
        scored: PortfolioScore = models.anomaly.process_one(snapshot)
        if isinstance(ts_ms, int):  # predicts and buffers for the delayed label
            p_alert = models.forecaster.observe(ts_ms, features)
        else:
            p_alert = models.forecaster.score_one(features)
        if has_var:
            models.varcast.learn_one(snapshot)
        out = self._ml_block(models, scored, features, p_alert, has_var)
        if scored.is_warm:
            models.recent_flags.append(scored.is_anomaly)
            models.recent_levels.append(out["anomaly_detection"]["risk_level"])
        models.last = out
        models.predictions += 1
        self.total_predictions += 1
        return out

    def between_bars(self, portfolio: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The block for a coalesced snapshot between bars: the portfolio's last prediction
        (the models learn and predict once per bar); the first snapshot of a portfolio is scored."""
        models = self.portfolio(portfolio)
        if models.last is None:
            return self.on_snapshot(portfolio, snapshot)
        self.add_market(snapshot)
        return dict(models.last)

    def add_market(self, snapshot: dict[str, Any]) -> None:
        """Add the market-wide model outputs to the snapshot's ``market`` block (when it has one):
        ``tick_anomaly`` = {asset or chain: score} of the tick keys scored warm within
        ``tick_recent_ms`` of event time before ``snapshot["ts_ms"]``, and ``volume_ratio`` (traded
        volume, latest / EWMA) once some liquidity tick reported ``volume_usd``."""
        market, ts_ms = snapshot.get("market"), snapshot.get("ts_ms")
        if not isinstance(market, dict) or isinstance(ts_ms, bool) or not isinstance(ts_ms, int):
            return
        market["tick_anomaly"] = self.ticks.recent_scores(ts_ms, self.tick_recent_ms)
        volume_ratio = self.ticks.volume_ratio()
        if volume_ratio is not None:
            market["volume_ratio"] = volume_ratio

    def _ml_block(
        self, models: PortfolioModels, scored: PortfolioScore, features: dict[str, float], p_alert: float,
        has_var: bool,
    ) -> dict[str, Any]:
        detection = anomaly_detection(scored.score, warm=scored.is_warm, threshold=models.anomaly.threshold)
        classification = risk_classification(models.forecaster.level_probabilities(features))
        return {
            "portfolio_score": scored.score,
            "portfolio_is_anomaly": scored.is_anomaly,
            "portfolio_warm": scored.is_warm,
            "top_feature": scored.top_feature,
            "alert_probability": p_alert,
            "alert_horizon_ms": self.horizon_ms,
            "forecaster_warm": models.forecaster.is_warm,
            "var_forecast": models.varcast.forecast() if has_var else None,
            "anomaly_detection": detection,
            "risk_classification": classification,
        }

    def on_alert(self, portfolio: str, ts_ms: int, severity: str) -> None:
        models = self.portfolio(portfolio)
        if not models.covers(ts_ms):
            models.forecaster.record_alert(ts_ms, severity)

    def advance(self, watermark_ms: int) -> int:
        """Advance every forecaster's watermark (except where a restored checkpoint already
        includes ``watermark_ms``); returns the number of labels learned."""
        return sum(
            m.forecaster.advance(watermark_ms) for m in self.portfolios.values() if not m.covers(watermark_ms)
        )

    # -- checkpoint parts ---------------------------------------------------------------
    def tick_state(self) -> dict[str, Any]:
        """The market-wide part (identical on every worker): tick detector and its counters."""
        return {
            "ticks": self.ticks,
            "recent_tick_flags": self.recent_tick_flags,
            "tick_predictions": self.tick_predictions,
        }

    def install_ticks(self, state: dict[str, Any], as_of_ms: int) -> None:
        """Adopt a checkpointed :meth:`tick_state` that includes every tick up to ``as_of_ms``."""
        if not isinstance(state, dict) or not isinstance(state.get("ticks"), TickAnomalyDetector):
            raise ModelStateError("tick checkpoint does not hold a TickAnomalyDetector")
        flags, count = state["recent_tick_flags"], int(state["tick_predictions"])
        self.ticks, self.recent_tick_flags, self.tick_predictions = state["ticks"], flags, count
        self.ticks_as_of_ms = as_of_ms
        self._recount()

    def install_portfolio(self, name: str, models: PortfolioModels, as_of_ms: int) -> None:
        """Adopt a checkpointed :class:`PortfolioModels` that includes every event up to ``as_of_ms``."""
        if not isinstance(models, PortfolioModels):
            raise ModelStateError(f"portfolio checkpoint holds {type(models).__name__}, not PortfolioModels")
        models.as_of_ms = as_of_ms
        self.portfolios[name] = models
        self.portfolios.move_to_end(name)
        if len(self.portfolios) > self.max_portfolios:
            self.portfolios.popitem(last=False)
        self._recount()

    def _recount(self) -> None:
        self.total_predictions = self.tick_predictions + sum(m.predictions for m in self.portfolios.values())

    def predictions(self, portfolio: str) -> dict[str, Any] | None:
        """Last seed-shaped predictions for ``portfolio`` (None before its first snapshot)."""
        models = self.portfolios.get(portfolio)
        if models is None or models.last is None:
            return None
        return {k: models.last[k] for k in ("anomaly_detection", "risk_classification")}

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Model status for the health API (samples, warm-up, recent rates, levels) and, per portfolio,
        the risk-level classifier's feature importance (:mod:`agents.anomaly.importance`)."""
        tick_rate = (
            sum(self.recent_tick_flags) / len(self.recent_tick_flags) if self.recent_tick_flags else 0.0
        )
        portfolios = {}
        for name, m in self.portfolios.items():
            levels = Counter(m.recent_levels)
            portfolios[name] = {
                "anomaly": {
                    "samples_seen": m.anomaly.n_seen,
                    "warm": m.anomaly.is_warm,
                    "anomaly_rate_recent": sum(m.recent_flags) / len(m.recent_flags)
                    if m.recent_flags
                    else 0.0,
                    "risk_level_distribution": {lvl: levels.get(lvl, 0) for lvl in RISK_LEVELS},
                },
                "alert_forecast": m.forecaster.status(),
                "risk_classification": {
                    "samples_labelled": m.forecaster.n_labelled,
                    "level_counts": dict(zip(RISK_LEVELS, m.forecaster.level_counts, strict=True)),
                    "feature_importance": level_model_importance(m.forecaster.level_model),
                    "feature_importance_method": "mean |weight| over levels, standardised inputs",
                },
                "var_forecast": {"samples_seen": m.varcast.n_seen, "warm": m.varcast.is_warm},
            }
        return {
            "state_version": STATE_VERSION,
            "models_loaded": 1 + 3 * len(self.portfolios),
            "total_predictions": self.total_predictions,
            "ticks": {
                "samples_seen": self.ticks.n_seen,
                "keys": len(self.ticks.keys),
                "warm": self.ticks.is_warm,
                "anomaly_rate_recent": tick_rate,
            },
            "portfolios": portfolios,
        }

    # -- checkpoint -----------------------------------------------------------------------
    def state_bytes(self, secret: bytes) -> bytes:
        """The whole bundle, signed with ``secret`` (at least 16 bytes)."""
        from agents.anomaly.checkpoint import Checkpoint

        return Checkpoint.take(BUNDLE_KEY, self, -1).to_bytes(secret)

    @classmethod
    def from_state_bytes(cls, data: bytes, secret: bytes) -> ModelBundle:
        """Verify, then restore a bundle; raises ``ModelStateError`` on a forged, foreign, oversized,
        corrupt or incompatible blob (nothing is inflated or unpickled before the tag verifies)."""
        from agents.anomaly.checkpoint import Checkpoint

        bundle = Checkpoint.from_bytes(BUNDLE_KEY, data, secret).load()
        if not isinstance(bundle, cls):
            raise ModelStateError(f"model checkpoint holds {type(bundle).__name__}, not {cls.__name__}")
        return bundle

"""The model bundle: every online model of the service, its checkpoint and its status.

:class:`ModelBundle` holds the tick detector (market-wide, keyed by asset/chain)
and, per portfolio, a :class:`PortfolioModels` (snapshot anomaly scorer, alert
forecaster, VaR forecaster). The agent feeds it ticks, snapshots, alerts and the
watermark; it returns plain dicts ready for snapshots, Prometheus and the API.

Checkpoints: :meth:`ModelBundle.state_bytes` = ``MAGIC + version (uint16 BE) +
pickle``. :meth:`ModelBundle.from_state_bytes` checks magic and version *before*
unpickling and raises :class:`~agents.anomaly.errors.ModelStateError` with a clear
message otherwise. Pickle is only ever read from the service's own changelog /
compacted topic, never from producers. Bump :data:`STATE_VERSION` whenever a
model's attributes change incompatibly; an old checkpoint is then refused and the
models start cold (the agent logs it) rather than running on garbled state.

Seed API fields (``GET /api/v1/predictions``) come from :func:`anomaly_detection`
and :func:`risk_classification`.
"""

from __future__ import annotations

import pickle
import struct
from collections import Counter, OrderedDict, deque
from typing import Any

from agents.anomaly.errors import ModelStateError
from agents.anomaly.forecast import RISK_LEVELS, AlertForecaster
from agents.anomaly.portfolio import PortfolioAnomalyScorer, PortfolioScore, snapshot_features
from agents.anomaly.ticks import TickAnomalyDetector, TickScore
from agents.anomaly.varcast import VarForecaster

STATE_VERSION = 1
MAGIC = b"MEVRISK-ML\x00"
_HEADER = struct.Struct(">H")


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


class ModelBundle:
    """All online models, checkpointable as one blob.

    >>> b = ModelBundle(seed=1)
    >>> restored = ModelBundle.from_state_bytes(b.state_bytes())
    >>> restored.status()["models_loaded"]
    1
    """

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

    # -- inputs -------------------------------------------------------------------------
    def on_tick(self, tick: dict[str, Any]) -> TickScore:
        result = self.ticks.process_one(tick)
        if result.is_warm:
            self.recent_tick_flags.append(result.is_anomaly)
        self.total_predictions += 1
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

        ``snapshot["ts_ms"]`` is the event time used for the alert forecast.
        """
        models = self.portfolio(portfolio)
        scored: PortfolioScore = models.anomaly.process_one(snapshot)
        features = snapshot_features(snapshot)
        ts_ms = snapshot.get("ts_ms")
        p_alert = models.forecaster.score_one(features)
        if isinstance(ts_ms, int):
            p_alert = models.forecaster.observe(ts_ms, features)
        has_var = any(k in snapshot for k in ("var_95", "var_95_usd"))
        if has_var:
            models.varcast.learn_one(snapshot)
        detection = anomaly_detection(scored.score, warm=scored.is_warm, threshold=models.anomaly.threshold)
        classification = risk_classification(models.forecaster.level_probabilities(features))
        if scored.is_warm:
            models.recent_flags.append(scored.is_anomaly)
            models.recent_levels.append(detection["risk_level"])
        out = {
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
        models.last = out
        self.total_predictions += 1
        return out

    def on_alert(self, portfolio: str, ts_ms: int, severity: str) -> None:
        self.portfolio(portfolio).forecaster.record_alert(ts_ms, severity)

    def advance(self, watermark_ms: int) -> int:
        """Advance every forecaster's watermark; returns the number of labels learned."""
        return sum(m.forecaster.advance(watermark_ms) for m in self.portfolios.values())

    def predictions(self, portfolio: str) -> dict[str, Any] | None:
        """Last seed-shaped predictions for ``portfolio`` (None before its first snapshot)."""
        models = self.portfolios.get(portfolio)
        if models is None or models.last is None:
            return None
        return {k: models.last[k] for k in ("anomaly_detection", "risk_classification")}

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Model status for the health API (samples, warm-up, recent rates, levels)."""
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
    def state_bytes(self) -> bytes:
        return MAGIC + _HEADER.pack(STATE_VERSION) + pickle.dumps(self, protocol=5)

    @classmethod
    def from_state_bytes(cls, data: bytes) -> ModelBundle:
        """Restore a bundle; raises ``ModelStateError`` on a foreign or incompatible blob."""
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER.size:
            raise ModelStateError("not a MEV Risk Stream model checkpoint (bad magic header)")
        (version,) = _HEADER.unpack_from(data, len(MAGIC))
        if version != STATE_VERSION:
            raise ModelStateError(
                f"model checkpoint has state version {version}, this build reads version "
                f"{STATE_VERSION}; refusing to load it (start cold or migrate the checkpoint)"
            )
        try:
            bundle = pickle.loads(data[len(MAGIC) + _HEADER.size :])
        except Exception as exc:  # corrupt payload: surface one clear error type
            raise ModelStateError(f"model checkpoint is corrupt: {exc!r}") from exc
        if not isinstance(bundle, cls):
            raise ModelStateError(f"model checkpoint holds {type(bundle).__name__}, not {cls.__name__}")
        return bundle

"""Portfolio-state anomaly scoring over risk snapshot features (pure core, no Faust).

:func:`snapshot_features` maps a snapshot dict (as the risk core publishes it to
``risk.snapshots``) to model features; several spellings of a field are accepted
(first found wins, see :data:`FEATURE_ALIASES`) and missing fields are simply absent.
Money amounts and gas enter as ``log1p`` (their scale moves by orders of
magnitude), plus ``var95_to_exposure``; the hour of day enters as ``hour_sin`` /
``hour_cos`` (UTC, from ``ts_ms``).

:func:`model_features` adds the seed's market features where the data has them, read from the
snapshot's ``market`` block (:func:`market_features`): gas (gwei, over the chains the
portfolio is exposed on), liquidity ratio, market correlation and volume ratio. They feed the
alert forecaster and the risk-level classifier, not the anomaly scorer: a market event would
flag every portfolio at once, and the tick detector already scores the market itself.

:class:`PortfolioAnomalyScorer` scores one portfolio's snapshots with a robust
z-score ensemble (:class:`~agents.anomaly.detectors.RobustZScorer`) over every
feature except the hour of day (a z-score of a cyclical, uniform feature means
nothing; the hour still goes to the alert forecaster). Like the tick detector it
does not learn from snapshots it flags once warm, except after
``max_consecutive_flags`` flagged snapshots in a row (a new regime is learned slowly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.anomaly.detectors import RobustZScorer, make_detector, z_to_score
from agents.anomaly.errors import InvalidFeatureInput

DAY_MS = 86_400_000

#: feature name -> snapshot field names accepted for it, in order of preference
FEATURE_ALIASES: dict[str, tuple[str, ...]] = {
    "total_risk": ("total_risk", "total_risk_score"),
    "max_concentration": ("max_concentration",),
    "correlation_risk": ("correlation_risk",),
    "total_exposure": ("total_exposure", "total_exposure_usd", "gross_exposure_usd"),
    "var_95": ("var_95", "var_95_usd"),
    "var_99": ("var_99", "var_99_usd"),
    "volatility": ("volatility", "portfolio_volatility"),
    "gas_price_gwei": ("gas_price_gwei", "gas_gwei", "base_fee_gwei"),
    "liquidity_ratio": ("liquidity_ratio",),
}
_LOG_FEATURES = frozenset({"total_exposure", "var_95", "var_99", "gas_price_gwei"})
HOUR_FEATURES = ("hour_sin", "hour_cos")


def _value(snapshot: dict[str, Any], names: tuple[str, ...]) -> float | None:
    for name in names:
        if name in snapshot and snapshot[name] is not None:
            value = snapshot[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidFeatureInput(f"snapshot field {name!r} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidFeatureInput(f"snapshot field {name!r} must be finite, got {value!r}")
            return float(value)
    return None


def snapshot_features(snapshot: dict[str, Any]) -> dict[str, float]:
    """Model features of a risk snapshot (pure; the input is not modified).

    >>> f = snapshot_features({"var_95": 1000.0, "total_exposure": 10000.0, "ts_ms": 6 * 3600_000})
    >>> round(f["var95_to_exposure"], 3), round(f["hour_sin"], 3), round(f["hour_cos"], 3)
    (0.1, 1.0, 0.0)
    """
    out: dict[str, float] = {}
    raw: dict[str, float] = {}
    for feature, names in FEATURE_ALIASES.items():
        value = _value(snapshot, names)
        if value is None:
            continue
        raw[feature] = value
        out[feature] = math.log1p(max(value, 0.0)) if feature in _LOG_FEATURES else value
    if raw.get("total_exposure", 0.0) > 0.0 and "var_95" in raw:
        out["var95_to_exposure"] = raw["var_95"] / raw["total_exposure"]
    ts = snapshot.get("ts_ms", snapshot.get("timestamp_ms"))
    if isinstance(ts, int) and not isinstance(ts, bool):
        angle = 2.0 * math.pi * (ts % DAY_MS) / DAY_MS
        out["hour_sin"], out["hour_cos"] = math.sin(angle), math.cos(angle)
    return out


#: features of the market block (``snapshot["market"]``), as the risk core and the bundle write it
MARKET_FEATURES = ("gas_price_gwei", "liquidity_ratio", "market_correlation", "volume_ratio")


def _portfolio_gas_gwei(snapshot: dict[str, Any], gas: Any) -> float | None:
    """Mean gas (gwei) of the chains the portfolio is exposed on, weighted by its gross exposure
    per chain; the plain mean over every chain when it holds nothing on a chain with gas data."""
    if not isinstance(gas, dict):
        return None
    means: dict[str, float] = {}
    for chain, stats in sorted(gas.items()):
        mean = _value(stats, ("mean",)) if isinstance(stats, dict) else None
        if mean is not None:
            means[chain] = mean
    if not means:
        return None
    exposure = snapshot.get("exposure_by_chain")
    weights = {c: abs(_value(exposure, (c,)) or 0.0) for c in means} if isinstance(exposure, dict) else {}
    total = sum(weights.values())
    if total > 0:
        return sum(means[c] * w for c, w in weights.items()) / total
    return sum(means.values()) / len(means)


def market_features(snapshot: dict[str, Any]) -> dict[str, float]:
    """The seed's market features from the snapshot's ``market`` block (pure): ``gas_price_gwei``
    (``log1p`` of :func:`_portfolio_gas_gwei`), ``liquidity_ratio``, ``market_correlation`` (mean
    pairwise EWMA correlation) and ``volume_ratio``; a field the block lacks is absent.

    >>> market_features({"market": {"gas_gwei": {"ethereum": {"mean": 20.0}, "base": {"mean": 0.1}},
    ...                              "liquidity_ratio": 0.5, "correlation": 0.8, "volume_ratio": 2.0},
    ...                  "exposure_by_chain": {"ethereum": 300.0, "base": 0.0}})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'gas_price_gwei': 3.044522437723423, 'liquidity_ratio': 0.5, 'market_correlation': 0.8,
     'volume_ratio': 2.0}
    """
    market = snapshot.get("market")
    if not isinstance(market, dict):
        return {}
    out: dict[str, float] = {}
    gas = _portfolio_gas_gwei(snapshot, market.get("gas_gwei"))
    if gas is not None:
        out["gas_price_gwei"] = math.log1p(max(gas, 0.0))
    for feature, field in (("liquidity_ratio", "liquidity_ratio"), ("market_correlation", "correlation"),
                           ("volume_ratio", "volume_ratio")):
        value = _value(market, (field,))
        if value is not None:
            out[feature] = value
    return out


def model_features(snapshot: dict[str, Any]) -> dict[str, float]:
    """Inputs of the alert forecaster and the risk-level classifier: :func:`snapshot_features`
    plus :func:`market_features` (a top-level field of the same name wins).

    >>> f = model_features({"var_95": 1.0, "ts_ms": 0, "market": {"liquidity_ratio": 0.4}})
    >>> f["liquidity_ratio"], f["hour_cos"]
    (0.4, 1.0)
    """
    return {**market_features(snapshot), **snapshot_features(snapshot)}


@dataclass(frozen=True, slots=True)
class PortfolioScore:
    """Outcome of scoring one snapshot; ``top_feature`` drove the score (or None)."""

    score: float
    is_anomaly: bool
    is_warm: bool
    learned: bool
    top_feature: str | None
    features: dict[str, float]


class PortfolioAnomalyScorer:
    """Anomaly scorer for one portfolio's stream of risk snapshots.

    >>> s = PortfolioAnomalyScorer(warmup=10)
    >>> s.score_one({"var_95": 100.0})
    0.0
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        method: str = "robust_z",
        threshold: float = 0.5,
        warmup: int = 60,
        max_consecutive_flags: int = 10,
        detector_params: dict[str, float] | None = None,
    ) -> None:
        self.seed = seed
        self.method = method
        self.threshold = threshold
        self.warmup = warmup
        self.max_consecutive_flags = max_consecutive_flags
        self.detector = make_detector(method, seed=seed, **(detector_params or {}))
        self.n_seen = 0
        self.n_flagged = 0
        self._flag_run = 0

    @staticmethod
    def _scored(features: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in features.items() if k not in HOUR_FEATURES}

    @property
    def is_warm(self) -> bool:
        return self.n_seen >= self.warmup

    def score_one(self, snapshot: dict[str, Any]) -> float:
        """Anomaly score in ``[0, 1]``; 0.0 before any learning."""
        return self.detector.score_one(self._scored(snapshot_features(snapshot)))

    def learn_one(self, snapshot: dict[str, Any]) -> None:
        """Learn ``snapshot`` unless it is flagged (see the module docstring)."""
        self.process_one(snapshot)

    def peek_one(self, snapshot: dict[str, Any]) -> PortfolioScore:
        """What ``process_one`` would return, without learning or counting (``learned`` False)."""
        features = snapshot_features(snapshot)
        scored = self._scored(features)
        top = None
        if isinstance(self.detector, RobustZScorer):  # one pass gives score and top feature
            zs = self.detector.zscores(scored)
            top = max(zs, key=zs.__getitem__) if zs else None
            score = z_to_score(zs[top], self.detector.z_half) if top is not None else 0.0
        else:
            score = self.detector.score_one(scored)
        warm = self.is_warm
        return PortfolioScore(score, warm and score >= self.threshold, warm, False, top, features)

    def process_one(self, snapshot: dict[str, Any]) -> PortfolioScore:
        """Score, then learn unless flagged; returns the full outcome."""
        peeked = self.peek_one(snapshot)
        features, score, warm, top = peeked.features, peeked.score, peeked.is_warm, peeked.top_feature
        scored = self._scored(features)
        flagged = peeked.is_anomaly
        self.n_seen += 1
        self._flag_run = self._flag_run + 1 if flagged else 0
        self.n_flagged += flagged
        learned = not flagged or self._flag_run > self.max_consecutive_flags
        if learned:
            self.detector.learn_one(scored)
        return PortfolioScore(score, flagged, warm, learned, top, features)

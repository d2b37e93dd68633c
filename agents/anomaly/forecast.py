"""Alert forecasting with delayed labels (pure core, no Faust).

:class:`AlertForecaster` estimates, for one portfolio, the probability that a HIGH
or CRITICAL alert fires within the next ``horizon_ms`` of event time, from the
snapshot features of :func:`agents.anomaly.portfolio.snapshot_features` (or any
flat numeric dict).

**Delayed labels, no look-ahead.** ``observe(ts_ms, x)`` predicts and buffers the
features with their event time ``t``. Alerts are reported with
``record_alert(ts_ms, severity)``. Only when the watermark passed to
``advance(watermark_ms)`` reaches ``t + horizon_ms`` is the label known — did a
HIGH/CRITICAL alert fire in ``(t, t + horizon_ms]`` — and only then are the
online metrics updated and ``learn_one`` called. Alerts are assumed to reach the
forecaster no later than the watermark passes their event time (the watermark's
allowed lateness covers reordering); features older than ``watermark - horizon``
on arrival are not buffered (``stale_features``).

Online metrics (``river.metrics``): ROC AUC and log loss of the prediction made at
``observe`` time, against a no-skill baseline that always predicts the base rate
seen so far (Laplace-smoothed), which has no ranking skill (ROC AUC about 0.5).

A second head (one-vs-rest logistic regression) learns the *highest alert
severity* in the horizon (``LOW`` when none fired) on the same delayed labels; it
feeds ``risk_classification`` in :mod:`agents.anomaly.models`.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from river import linear_model, metrics, multiclass, optim, preprocessing

RISK_LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_RANK = {name: i for i, name in enumerate(RISK_LEVELS)}
_EPS = 1e-6


def severity_rank(severity: str) -> int:
    """Rank of an alert severity (case-insensitive); unknown severities rank as LOW.

    >>> severity_rank("critical"), severity_rank("info")
    (3, 0)
    """
    return _RANK.get(str(severity).upper(), 0)


def _binary_model(learning_rate: float, l2: float) -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate), l2=l2
    )


def _level_model(learning_rate: float, l2: float) -> Any:
    return preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
    )


@dataclass(frozen=True, slots=True)
class _Pending:
    ts_ms: int
    x: dict[str, float]
    p_model: float
    p_base: float


class AlertForecaster:
    """P(HIGH/CRITICAL alert within ``horizon_ms``) for one portfolio, learned online.

    >>> f = AlertForecaster(horizon_ms=1000)
    >>> f.score_one({"risk": 0.5})  # defined before any learning
    0.5
    >>> _ = f.observe(0, {"risk": 0.9})
    >>> f.record_alert(500, "HIGH")
    >>> f.advance(999)   # horizon of the t=0 features not passed yet
    0
    >>> f.advance(1000)  # now the label (alert in (0, 1000]) is known and learned
    1
    """

    def __init__(
        self,
        *,
        horizon_ms: int = 15 * 60_000,
        seed: int = 0,
        warmup: int = 50,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        min_rank: int = _RANK["HIGH"],
        max_pending: int = 20_000,
        max_alerts: int = 10_000,
        model: Any = None,
    ) -> None:
        if horizon_ms <= 0:
            raise ValueError("horizon_ms must be > 0")
        self.horizon_ms = horizon_ms
        self.seed = seed  # SGD from zero weights is deterministic; kept for the contract
        self.warmup = warmup
        self.min_rank = min_rank
        self.max_pending = max_pending
        self.max_alerts = max_alerts
        self.model = model if model is not None else _binary_model(learning_rate, l2)
        self.level_model = _level_model(learning_rate, l2)
        self.roc_auc = metrics.ROCAUC(n_thresholds=50)
        self.log_loss = metrics.LogLoss()
        self.baseline_roc_auc = metrics.ROCAUC(n_thresholds=50)
        self.baseline_log_loss = metrics.LogLoss()
        self.watermark_ms: int | None = None
        self.n_labelled = 0
        self.n_positive = 0
        self.level_counts = [0] * len(RISK_LEVELS)
        self.stale_features = 0
        self.dropped_pending = 0
        self.late_alerts = 0
        self._pending: deque[_Pending] = deque()
        self._alert_ts: list[int] = []
        self._alert_rank: list[int] = []

    # -- predictions ------------------------------------------------------------------
    @property
    def base_rate(self) -> float:
        return (self.n_positive + 1) / (self.n_labelled + 2)

    @property
    def is_warm(self) -> bool:
        return self.n_labelled >= self.warmup

    def score_one(self, x: dict[str, float]) -> float:
        """P(HIGH/CRITICAL alert within the horizon); 0.5 before any label was learned."""
        if self.n_labelled == 0:
            return 0.5
        p = self.model.predict_proba_one(x).get(True, 0.0)
        return min(max(float(p), _EPS), 1.0 - _EPS)

    def level_probabilities(self, x: dict[str, float]) -> dict[str, float]:
        """P(highest alert severity in the horizon = level), ``LOW`` meaning none/low."""
        total = sum(self.level_counts)
        prior = {
            lvl: (c + 1) / (total + len(RISK_LEVELS))
            for lvl, c in zip(RISK_LEVELS, self.level_counts, strict=True)
        }
        if sum(1 for c in self.level_counts if c) < 2:
            return prior
        proba = self.level_model.predict_proba_one(x)
        raw = {lvl: max(float(proba.get(lvl, 0.0)), 0.0) for lvl in RISK_LEVELS}
        norm = sum(raw.values())
        return {lvl: raw[lvl] / norm for lvl in RISK_LEVELS} if norm > 0 else prior

    # -- event-time inputs ---------------------------------------------------------------
    def observe(self, ts_ms: int, x: dict[str, float]) -> float:
        """Predict for features at event time ``ts_ms`` and buffer them for their label."""
        p = self.score_one(x)
        if self.watermark_ms is not None and ts_ms + self.horizon_ms <= self.watermark_ms:
            self.stale_features += 1
            return p
        item = _Pending(ts_ms, dict(x), p, self.base_rate)
        if not self._pending or ts_ms >= self._pending[-1].ts_ms:
            self._pending.append(item)
        else:  # rare out-of-order snapshot: keep the buffer sorted by event time
            items = list(self._pending)
            bisect.insort(items, item, key=lambda it: it.ts_ms)
            self._pending = deque(items)
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped_pending += 1
        return p

    def record_alert(self, ts_ms: int, severity: str) -> None:
        """Note that an alert of ``severity`` fired at event time ``ts_ms``."""
        if self.watermark_ms is not None and ts_ms <= self.watermark_ms:
            self.late_alerts += 1
        i = bisect.bisect_right(self._alert_ts, ts_ms)
        self._alert_ts.insert(i, ts_ms)
        self._alert_rank.insert(i, severity_rank(severity))
        if len(self._alert_ts) > self.max_alerts:
            del self._alert_ts[0], self._alert_rank[0]

    def advance(self, watermark_ms: int) -> int:
        """Move the watermark; label and learn every buffered sample whose horizon passed.

        Returns the number of samples learned.
        """
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
        wm = self.watermark_ms
        learned = 0
        while self._pending and self._pending[0].ts_ms + self.horizon_ms <= wm:
            item = self._pending.popleft()
            self._learn(item, self._max_rank(item.ts_ms, item.ts_ms + self.horizon_ms))
            learned += 1
        self._prune_alerts(wm)
        return learned

    # -- internals ---------------------------------------------------------------------
    def _max_rank(self, start_ms: int, end_ms: int) -> int:
        """Highest alert rank in ``(start_ms, end_ms]``, -1 if no alert."""
        lo = bisect.bisect_right(self._alert_ts, start_ms)
        hi = bisect.bisect_right(self._alert_ts, end_ms)
        return max(self._alert_rank[lo:hi], default=-1)

    def _learn(self, item: _Pending, max_rank: int) -> None:
        y = max_rank >= self.min_rank
        self.roc_auc.update(y, item.p_model)
        self.log_loss.update(y, item.p_model)
        self.baseline_roc_auc.update(y, item.p_base)
        self.baseline_log_loss.update(y, item.p_base)
        self.model.learn_one(item.x, y)
        level = RISK_LEVELS[max(max_rank, 0)]
        self.level_model.learn_one(item.x, level)
        self.level_counts[_RANK[level]] += 1
        self.n_labelled += 1
        self.n_positive += y

    def _prune_alerts(self, wm: int) -> None:
        """Drop alerts no buffered or future (non-stale) sample can still see."""
        oldest = self._pending[0].ts_ms if self._pending else wm - self.horizon_ms
        cut = bisect.bisect_right(self._alert_ts, min(oldest, wm - self.horizon_ms))
        if cut:
            del self._alert_ts[:cut], self._alert_rank[:cut]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def status(self) -> dict[str, Any]:
        """Online performance against the no-skill baseline (for the health API)."""
        ll, base_ll = self.log_loss.get(), self.baseline_log_loss.get()
        skill = 1.0 - ll / base_ll if self.n_labelled and base_ll > 0 else 0.0
        return {
            "horizon_ms": self.horizon_ms,
            "samples_labelled": self.n_labelled,
            "warm": self.is_warm,
            "base_rate": self.base_rate,
            "roc_auc": float(self.roc_auc.get()),
            "log_loss": ll,
            "baseline_roc_auc": float(self.baseline_roc_auc.get()),
            "baseline_log_loss": base_ll,
            "log_loss_skill": skill if math.isfinite(skill) else 0.0,
            "pending": self.pending,
            "stale_features": self.stale_features,
            "late_alerts": self.late_alerts,
            "dropped_pending": self.dropped_pending,
        }

"""VaR backtesting: exception series, Kupiec POF, Christoffersen independence,
Basel traffic light.

An *exception* is a bar whose realised P&L is below minus the VaR forecast made
one bar earlier (``pnl < -var``). Chi-square(1) p-values use
``P(X > x) = erfc(sqrt(x / 2))`` (exact for one degree of freedom; no scipy).
Basel zone: exceptions among the last 250 observations at 99 %:
green 0-4, yellow 5-9, red 10+ (with fewer observations, counted over what exists).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np


def chi2_1_sf(x: float) -> float:
    """Survival function of chi-square with 1 degree of freedom."""
    if x <= 0.0 or math.isnan(x):
        return 1.0
    return math.erfc(math.sqrt(x / 2.0))


def _xlogy(x: float, y: float) -> float:
    """``x * ln(y)`` with the convention ``0 * ln(0) = 0``."""
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pof(observations: int, exceptions: int, confidence: float) -> tuple[float, float]:
    """Kupiec proportion-of-failures LR statistic and its chi2(1) p-value."""
    n, x = observations, exceptions
    if n <= 0:
        return 0.0, 1.0
    p = 1.0 - confidence
    phat = x / n
    ll_null = _xlogy(n - x, 1.0 - p) + _xlogy(x, p)
    ll_alt = _xlogy(n - x, 1.0 - phat) + _xlogy(x, phat)
    lr = max(0.0, -2.0 * (ll_null - ll_alt))
    return lr, chi2_1_sf(lr)


def christoffersen_independence(hits: Sequence[bool] | np.ndarray) -> tuple[float, float]:
    """Christoffersen (1998) independence LR and chi2(1) p-value from a 0/1 series."""
    h = np.asarray(hits, dtype=bool)
    if h.size < 2:
        return 0.0, 1.0
    prev, cur = h[:-1], h[1:]
    n00 = int(np.sum(~prev & ~cur))
    n01 = int(np.sum(~prev & cur))
    n10 = int(np.sum(prev & ~cur))
    n11 = int(np.sum(prev & cur))
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    ll_null = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    ll_alt = (_xlogy(n00, 1.0 - pi0) + _xlogy(n01, pi0)
              + _xlogy(n10, 1.0 - pi1) + _xlogy(n11, pi1))
    lr = max(0.0, -2.0 * (ll_null - ll_alt))
    return lr, chi2_1_sf(lr)


def traffic_light(exceptions_last_250: int) -> str:
    """Basel zone for the exception count over the last 250 observations at 99 %."""
    if exceptions_last_250 <= 4:
        return "green"
    if exceptions_last_250 <= 9:
        return "yellow"
    return "red"


@dataclass(frozen=True)
class BacktestResult:
    """Summary of an exception series."""

    observations: int
    exceptions: int
    exception_rate: float
    kupiec_lr: float
    kupiec_pvalue: float
    christoffersen_lr: float
    christoffersen_pvalue: float
    zone: str
    zone_observations: int
    zone_exceptions: int
    confidence: float

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain JSON-friendly dict (the fields are scalars: a shallow copy is ``asdict``)."""
        return {f.name: getattr(self, f.name) for f in _RESULT_FIELDS}


_RESULT_FIELDS = fields(BacktestResult)


def evaluate(hits: Sequence[bool] | np.ndarray, confidence: float,
             zone_window: int = 250) -> BacktestResult:
    """All backtest statistics for an exception series (True = exception)."""
    h = np.asarray(hits, dtype=bool)
    n, x = int(h.size), int(h.sum())
    k_lr, k_p = kupiec_pof(n, x, confidence)
    c_lr, c_p = christoffersen_independence(h)
    tail = h[-zone_window:]
    zx = int(tail.sum())
    return BacktestResult(n, x, x / n if n else 0.0, k_lr, k_p, c_lr, c_p,
                          traffic_light(zx), int(tail.size), zx, confidence)


def exceptions(realised_pnl: np.ndarray, var_forecast: np.ndarray) -> np.ndarray:
    """Exception flags: realised P&L below minus the forecast VaR."""
    return np.asarray(realised_pnl, dtype=float) < -np.asarray(var_forecast, dtype=float)


class StreamingBacktest:
    """Per-bar tracker: the forecast made at bar t-1 is judged at bar t.

    Call :meth:`observe` with the bar's realised P&L of the positions held when
    the pending forecast was made (the engine computes it from the exposure
    vector it stored with the forecast), then :meth:`forecast` with the new
    VaR and exposures. Keeps the last ``history`` flags.
    """

    def __init__(self, confidence: float = 0.99, history: int = 1_000,
                 zone_window: int = 250) -> None:
        self.confidence = confidence
        self.zone_window = zone_window
        self.hits: deque[bool] = deque(maxlen=history)
        self.pending_var: float | None = None
        self.pending_exposures: np.ndarray | None = None
        self._observed = 0  # flags appended so far: with the deque's identity, the result's key
        self._memo: tuple[deque[bool], int, BacktestResult] | None = None

    def observe(self, realised_pnl_usd: float) -> bool | None:
        """Judge the pending forecast; returns the exception flag or None if none."""
        if self.pending_var is None:
            return None
        hit = bool(realised_pnl_usd < -self.pending_var)
        self.hits.append(hit)
        self._observed += 1
        self.pending_var = None
        return hit

    def forecast(self, var_usd: float, exposures_usd: np.ndarray | None) -> None:
        """Store the VaR forecast for the next bar and the exposures it covers."""
        self.pending_var = float(var_usd)
        self.pending_exposures = None if exposures_usd is None else np.array(exposures_usd)

    def result(self) -> BacktestResult:
        """Statistics over the retained exception series (recomputed only after a new flag: the
        series changes once per bar, a portfolio is read several times per bar)."""
        memo = self._memo
        if memo is None or memo[0] is not self.hits or memo[1] != self._observed:
            memo = self._memo = (self.hits, self._observed,
                                 evaluate(list(self.hits), self.confidence, self.zone_window))
        return memo[2]

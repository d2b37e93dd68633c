"""VaR forecast ``h`` bars ahead with a 95 % interval (pure core, no Faust).

Model (documented choice): damped-trend exponential smoothing (Holt) of
``log1p(VaR)`` with *empirical* interval bounds: for every horizon ``h`` the
forecaster keeps the last ``residual_window`` realised ``h``-step errors in log
space and uses their 2.5 % / 97.5 % quantiles. Until a horizon has
``min_residuals`` errors, a Gaussian interval from the one-step error scale times
``sqrt(h)`` is used. Working in log space keeps forecasts and bounds positive and
makes the interval scale with the VaR level.

Measured on the synthetic log-AR(1) VaR series of
``tests/unit/anomaly/test_varcast.py`` (4 000 bars, 7-bar-ahead MAE of log VaR):
this model 0.161, River ``SNARIMAX(p=2)`` 0.156, River ``HoltWinters`` 0.180,
naive last value 0.156; 95 % interval coverage of this model 0.947 (h=1) and
0.941 (h=7). No point model beats naive there; this one was kept because it
comes with a calibrated interval (River's models give none), needs no tuned
intercept or seasonal period and costs a few microseconds a bar.

One ``learn_one`` call is one bar; the agent decides the bar length (e.g. one
snapshot a minute). The seed's 7-period forecast is ``forecast(7)``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from agents.anomaly.detectors import z_to_score
from agents.anomaly.errors import AnomalyError, InvalidFeatureInput
from agents.anomaly.portfolio import FEATURE_ALIASES


def _bounds(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row 2.5 % / 97.5 % order statistics (outward-rounded ranks, so never narrower).

    ``np.partition`` is 4x cheaper than ``np.quantile`` on the 7 x 500 residual block.
    """
    n = rows.shape[1]
    lo, hi = math.floor(0.025 * (n - 1)), math.ceil(0.975 * (n - 1))
    part = np.partition(rows, [lo, hi], axis=1)
    return part[:, lo], part[:, hi]


_MAX_LOG_USD = 709.0
"""``expm1`` overflows (raises) above about 709.78: a forecast is capped at ``expm1(709)`` USD."""


def _expm1(x: float) -> float:
    """``math.expm1`` that never raises on a finite input (the log-space path can drift far).

    >>> _expm1(1e6) == math.expm1(709.0)
    True
    """
    return math.expm1(min(x, _MAX_LOG_USD))


class VarForecaster:
    """Damped Holt on ``log1p(VaR)`` with empirical per-horizon 95 % intervals.

    >>> f = VarForecaster(max_horizon=7)
    >>> f.forecast(3)["forecast"]  # defined (empty) before any learning
    []
    >>> for v in [1000.0, 1010.0, 990.0, 1005.0] * 10:
    ...     f.learn_one({"var_95": v})
    >>> out = f.forecast()
    >>> out["horizon"], len(out["forecast"]), out["lower_95"][0] < out["forecast"][0] < out["upper_95"][0]
    (7, 7, True)
    """

    def __init__(
        self,
        *,
        target: str = "var_95",
        max_horizon: int = 7,
        alpha: float = 0.3,
        beta: float = 0.05,
        phi: float = 0.9,
        residual_window: int = 500,
        min_residuals: int = 30,
        warmup: int = 30,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.max_horizon = max_horizon
        self.alpha, self.beta, self.phi = alpha, beta, phi
        self.residual_window = residual_window
        self.min_residuals = min_residuals
        self.warmup = warmup
        self.seed = seed  # deterministic model; kept for the shared scorer contract
        self.n_seen = 0
        self._level: float | None = None
        self._trend = 0.0
        self._err1_var = 0.0  # EW variance of one-step log errors
        # Ring buffer of realised h-step log errors: row h-1, ``_res_n[h-1]`` of them valid.
        self._res = np.zeros((max_horizon, residual_window))
        self._res_n = [0] * max_horizon
        self._past_paths: deque[list[float]] = deque(maxlen=max_horizon)

    @property
    def is_warm(self) -> bool:
        return self.n_seen >= self.warmup

    def _y(self, x: dict[str, Any]) -> float:
        names = FEATURE_ALIASES.get(self.target, (self.target,))
        for name in names:
            value = x.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidFeatureInput(f"{name!r} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise InvalidFeatureInput(f"{name!r} must be finite and >= 0, got {value!r}")
            return math.log1p(value)
        raise InvalidFeatureInput(f"VaR forecaster needs one of {names} in the input")

    def _path(self, horizon: int) -> list[float]:
        """Point forecasts in log space for 1..horizon bars ahead."""
        if self._level is None:  # callers learn one value first
            raise AnomalyError("VaR forecaster has no level before its first learn_one")
        out, damp = [], 0.0
        for h in range(1, horizon + 1):
            damp += self.phi**h
            out.append(self._level + damp * self._trend)
        return out

    def learn_one(self, x: dict[str, Any]) -> None:
        y = self._y(x)
        for h, path in enumerate(reversed(self._past_paths), start=1):
            n = self._res_n[h - 1]
            self._res[h - 1, n % self.residual_window] = y - path[h - 1]
            self._res_n[h - 1] = n + 1
        if self._level is None:
            self._level = y
        else:
            err = y - self._path(1)[0]
            w = max(0.05, 1.0 / (self.n_seen + 1))
            self._err1_var = (1 - w) * self._err1_var + w * err * err
            prev = self._level
            self._level = self.alpha * y + (1 - self.alpha) * (prev + self.phi * self._trend)
            self._trend = self.beta * (self._level - prev) + (1 - self.beta) * self.phi * self._trend
        self._past_paths.append(self._path(self.max_horizon))
        self.n_seen += 1

    def score_one(self, x: dict[str, Any]) -> float:
        """How surprising ``x``'s VaR is against the one-step forecast, in ``[0, 1]``."""
        y = self._y(x)
        if self._level is None or self.n_seen < 3:
            return 0.0
        sigma = max(math.sqrt(self._err1_var), 1e-3)
        return z_to_score(abs(y - self._path(1)[0]) / sigma, 5.0)

    def forecast(self, horizon: int | None = None) -> dict[str, Any]:
        """``{horizon, forecast[], lower_95[], upper_95[]}`` in USD (empty before learning)."""
        horizon = self.max_horizon if horizon is None else horizon
        if not 1 <= horizon <= self.max_horizon:
            raise ValueError(f"horizon must be in 1..{self.max_horizon}, got {horizon}")
        if self._level is None:
            return {"horizon": horizon, "forecast": [], "lower_95": [], "upper_95": []}
        path = self._path(horizon)
        sigma1 = math.sqrt(self._err1_var)
        full = self._res_n[horizon - 1] >= self.residual_window  # then every shorter row is too
        q_full = _bounds(self._res[:horizon]) if full else None
        lower, upper = [], []
        for h, mu in enumerate(path, start=1):
            n = min(self._res_n[h - 1], self.residual_window)
            if q_full is not None:
                q_lo, q_hi = q_full[0][h - 1], q_full[1][h - 1]
            elif n >= self.min_residuals:
                q_lo, q_hi = (float(q[0]) for q in _bounds(self._res[h - 1 : h, :n]))
            else:
                q_lo, q_hi = -1.96 * sigma1 * math.sqrt(h), 1.96 * sigma1 * math.sqrt(h)
            lower.append(_expm1(mu + min(float(q_lo), 0.0)))
            upper.append(_expm1(mu + max(float(q_hi), 0.0)))
        return {
            "horizon": horizon,
            "forecast": [_expm1(mu) for mu in path],
            "lower_95": [max(v, 0.0) for v in lower],
            "upper_95": upper,
        }

"""Value at Risk and Expected Shortfall.

Conventions (also in README and used by the CLI):

* Exposures are USD (signed: long > 0). P&L sign: positive = profit.
* Scenario P&L of scenario s: ``sum_a exposure_usd[a] * (exp(r[s, a]) - 1)``.
* Historical simulation, quantile rule: sort the n scenario P&Ls ascending
  ``p(1) <= ... <= p(n)``; ``k = ceil(n * (1 - confidence))`` (computed after
  rounding ``n * (1 - confidence)`` to 9 decimals so that 500 * (1 - 0.99) is 5,
  not 5.000000000000004; clamped to ``1..n``); ``VaR = -p(k)`` and
  ``ES = -mean(p(1..k))``.
* VaR and ES are reported as positive numbers meaning losses in USD (a
  portfolio that gains in its k-th worst scenario gets a negative VaR).
* Parametric (normal, zero mean): ``sigma = sqrt(e' S e)``,
  ``VaR = z_c * sigma``, ``ES = sigma * phi(z_c) / (1 - c)``.
* Horizon: ``h``-bar figures are the 1-bar figures times ``sqrt(h)``.
* Component VaR (Euler): historical, ``C_i = -pnl_i(s_k)``: minus the position's
  (or asset's) P&L in the scenario that sets the VaR, so components sum exactly
  to VaR; parametric, ``C_i = z * e_i (S e)_i / sigma`` (sums to VaR).
* Marginal VaR of asset a: ``dVaR / d exposure_a`` in USD of VaR per USD of
  exposure: ``-(exp(r[s_k, a]) - 1)`` historical, ``z (S e)_a / sigma`` parametric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_STD_NORMAL = NormalDist()


def tail_count(n: int, confidence: float) -> int:
    """``k = ceil(n * (1 - confidence))`` clamped to ``1..n`` (see module doc)."""
    if n < 1:
        raise ValueError("need at least one scenario")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return min(n, max(1, math.ceil(round(n * (1.0 - confidence), 9))))


def scenario_pnl(simple_returns: np.ndarray, exposures_usd: np.ndarray) -> np.ndarray:
    """P&L per scenario, ``(exp(r) - 1) @ exposures``; input shape (n, a) and (a,)."""
    return np.asarray(simple_returns) @ np.asarray(exposures_usd, dtype=float)


@dataclass(frozen=True)
class TailStats:
    """VaR/ES at one confidence and the scenario row that sets the VaR."""

    confidence: float
    k: int
    var_usd: float
    es_usd: float
    scenario: int


class SortedPnl:
    """Scenario P&Ls sorted once, queried at several confidences."""

    def __init__(self, pnl: np.ndarray) -> None:
        pnl = np.asarray(pnl, dtype=float)
        if pnl.ndim != 1 or pnl.size == 0:
            raise ValueError("scenario P&L must be a non-empty 1-D array")
        self.order = np.argsort(pnl, kind="stable")
        self.sorted = pnl[self.order]
        self._csum = np.cumsum(self.sorted)

    @property
    def n(self) -> int:
        """Number of scenarios."""
        return int(self.sorted.size)

    def tail(self, confidence: float) -> TailStats:
        """VaR = -p(k), ES = -mean(p(1..k)) and the scenario index of p(k)."""
        k = tail_count(self.n, confidence)
        return TailStats(confidence, k, float(-self.sorted[k - 1]),
                         float(-self._csum[k - 1] / k), int(self.order[k - 1]))

    def tail_scenarios(self, confidence: float) -> np.ndarray:
        """Row indices of the k worst scenarios (used for ES components)."""
        return self.order[: tail_count(self.n, confidence)]


def historical_var_es(pnl: np.ndarray, confidence: float) -> tuple[float, float]:
    """Historical VaR and ES (USD, positive = loss) of scenario P&Ls at ``confidence``.

    >>> historical_var_es(np.array([-5.0, -1.0, 2.0, 3.0]), 0.75)
    (5.0, 5.0)
    """
    pnl = np.asarray(pnl, dtype=float)
    k = tail_count(pnl.size, confidence)
    part = np.partition(pnl, k - 1)
    return -float(part[k - 1]), -float(part[:k].sum()) / k


def z_score(confidence: float) -> float:
    """Standard normal quantile ``z_c`` (stdlib, no scipy)."""
    return _STD_NORMAL.inv_cdf(confidence)


def portfolio_sigma(cov: np.ndarray, exposures_usd: np.ndarray) -> float:
    """Portfolio P&L standard deviation in USD per bar: ``sqrt(e' S e)``."""
    e = np.asarray(exposures_usd, dtype=float)
    return math.sqrt(max(0.0, float(e @ cov @ e)))


def parametric_var_es(sigma_usd: float, confidence: float) -> tuple[float, float]:
    """Normal zero-mean VaR and ES from the P&L standard deviation (USD)."""
    z = z_score(confidence)
    return z * sigma_usd, sigma_usd * _STD_NORMAL.pdf(z) / (1.0 - confidence)


def scale_horizon(value_usd: float, horizon_bars: float) -> float:
    """Square-root-of-time scaling of a 1-bar VaR/ES to ``horizon_bars`` bars."""
    if horizon_bars <= 0:
        raise ValueError("horizon must be > 0")
    return value_usd * math.sqrt(horizon_bars)


def historical_components(simple_returns: np.ndarray, leg_asset: np.ndarray,
                          leg_exposure: np.ndarray, scenario: int) -> np.ndarray:
    """Euler component VaR per leg: minus the leg's P&L in the VaR scenario."""
    row = np.asarray(simple_returns)[scenario]
    return -np.asarray(leg_exposure) * row[np.asarray(leg_asset)]


def parametric_components(cov: np.ndarray, exposures_usd: np.ndarray, leg_asset: np.ndarray,
                          leg_exposure: np.ndarray, confidence: float) -> np.ndarray:
    """Euler component parametric VaR per leg: ``z * x_leg * (S e)_asset / sigma``."""
    e = np.asarray(exposures_usd, dtype=float)
    sigma = portfolio_sigma(cov, e)
    if sigma == 0.0:
        return np.zeros(len(leg_exposure))
    grad = z_score(confidence) * (cov @ e) / sigma
    return np.asarray(leg_exposure) * grad[np.asarray(leg_asset)]


def parametric_marginal(cov: np.ndarray, exposures_usd: np.ndarray,
                        confidence: float) -> np.ndarray:
    """Marginal parametric VaR per asset (USD of VaR per USD of exposure)."""
    e = np.asarray(exposures_usd, dtype=float)
    sigma = portfolio_sigma(cov, e)
    if sigma == 0.0:
        return np.zeros(e.shape[0])
    return z_score(confidence) * (cov @ e) / sigma


def exit_cost_usd(exposure_usd: np.ndarray, spread_bps: np.ndarray,
                  depth_usd: np.ndarray) -> np.ndarray:
    """Cost of exiting each asset exposure now (USD, >= 0), the liquidity add-on.

    Model: the marginal cost per USD sold at cumulative size x is
    ``(spread/2) * max(1, x / depth)`` (half the spread inside the quoted depth,
    then one more half-spread per depth walked through the book). Integrated:
    ``|e| * s/2`` when ``|e| <= depth``, else
    ``depth * s/2 + s/(4 depth) * (|e|^2 - depth^2)``; capped at ``|e|`` (you
    cannot lose more than the position on exit). ``spread = spread_bps / 1e4``.
    A depth of NaN means unknown: spread cost only. A known depth <= 0 is
    treated as 1 USD.
    """
    e = np.abs(np.asarray(exposure_usd, dtype=float))
    s = np.asarray(spread_bps, dtype=float) / 1e4
    d = np.asarray(depth_usd, dtype=float)
    unknown = np.isnan(d)
    d = np.where(unknown, np.inf, np.maximum(d, 1.0))
    base = e * s / 2.0
    with np.errstate(invalid="ignore"):
        deep = d * s / 2.0 + s / (4.0 * d) * (e * e - d * d)
    cost = np.where(e > d, deep, base)
    return np.minimum(cost, e)


def liquidity_adjusted_var(var_usd: float, exposure_usd: np.ndarray, spread_bps: np.ndarray,
                           depth_usd: np.ndarray) -> float:
    """LVaR = VaR + total exit cost (:func:`exit_cost_usd`), USD."""
    return var_usd + float(exit_cost_usd(exposure_usd, spread_bps, depth_usd).sum())

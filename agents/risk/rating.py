"""Portfolio risk rating LOW / MEDIUM / HIGH / CRITICAL.

Score (seed weights, configurable in ``risk.yaml`` under ``rating``):
``score = w_t * total_risk + w_c * concentration_score + w_r * correlation_score``
with ``total_risk = min(1, (var_95 / gross) / var_share_full)``; concentration
and correlation map to ``high_score`` above their high cut, ``medium_score``
above their medium cut, else ``low_score``. Rating: CRITICAL when
``score >= critical`` or ``var_99 / gross >= critical_var99_share``; else HIGH at
``score >= high``, MEDIUM at ``score >= medium``, else LOW.

The engine passes, for each of VaR95 and VaR99, the larger of the historical
and the EWMA-parametric figure, so the rating reacts within a few bars to a
volatility regime change that the 500-bar historical window absorbs slowly.
"""

from __future__ import annotations

from enum import StrEnum

from agents.risk.config import RatingThresholds


class Rating(StrEnum):
    """Portfolio risk rating, ordered LOW < MEDIUM < HIGH < CRITICAL."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


def _banded(value: float, high: float, medium: float, t: RatingThresholds) -> float:
    if value > high:
        return t.high_score
    if value > medium:
        return t.medium_score
    return t.low_score


def rating_score(var_95: float, var_99: float, gross: float, max_concentration: float,
                 correlation_risk: float, t: RatingThresholds) -> tuple[float, list[str]]:
    """Weighted score in [0, 1] and the reasons that contributed to it."""
    share = var_95 / gross if gross > 0 else 0.0
    total = min(1.0, max(0.0, share / t.var_share_full))
    conc = _banded(max_concentration, t.concentration_high, t.concentration_medium, t)
    corr = _banded(correlation_risk, t.correlation_high, t.correlation_medium, t)
    score = (t.weight_total_risk * total + t.weight_concentration * conc
             + t.weight_correlation * corr)
    reasons = []
    if total > 0:
        reasons.append(f"var_95 is {share:.2%} of gross exposure")
    if conc > t.low_score:
        reasons.append(f"max concentration {max_concentration:.2f}")
    if corr > t.low_score:
        reasons.append(f"correlation risk {correlation_risk:.2f}")
    return score, reasons


def rate(var_95: float, var_99: float, gross: float, max_concentration: float,
         correlation_risk: float, t: RatingThresholds) -> tuple[Rating, float, list[str]]:
    """Rating, score and reasons (see module doc for the rule)."""
    score, reasons = rating_score(var_95, var_99, gross, max_concentration,
                                  correlation_risk, t)
    var99_share = var_99 / gross if gross > 0 else 0.0
    if score >= t.critical or var99_share >= t.critical_var99_share:
        if var99_share >= t.critical_var99_share:
            reasons.append(f"var_99 is {var99_share:.2%} of gross exposure")
        return Rating.CRITICAL, score, reasons
    if score >= t.high:
        return Rating.HIGH, score, reasons
    if score >= t.medium:
        return Rating.MEDIUM, score, reasons
    return Rating.LOW, score, reasons

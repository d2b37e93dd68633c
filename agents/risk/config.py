"""Typed, frozen configuration of the risk core, parsed from ``deploy/config/risk.yaml``.

Parsing happens once at the edge (:func:`load_risk_config`); the core only sees
:class:`RiskConfig`. Every field has a default, so ``RiskConfig()`` is a valid
configuration for tests and the offline calculator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from agents.risk.errors import RiskConfigError

DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "arbitrage": 0.5,
    "liquidation": 1.2,
    "sandwich": 1.5,
    "frontrun": 0.8,
    "backrun": 0.6,
    "jit": 0.8,
    "other": 1.0,
}

# Share of |exposure| a position of this kind spends on gas per bar of activity;
# the gas-spike stress multiplies it (seed: gas hurts liquidation and sandwich most).
DEFAULT_GAS_COST_SHARE: dict[str, float] = {
    "arbitrage": 0.001,
    "liquidation": 0.004,
    "sandwich": 0.005,
    "frontrun": 0.002,
    "backrun": 0.001,
    "jit": 0.002,
    "other": 0.001,
}


@dataclass(frozen=True)
class RatingThresholds:
    """Portfolio rating score and cut-offs (seed weights 40/30/30, HIGH 0.7, MEDIUM 0.4).

    ``total_risk`` is ``min(1, var_95 / gross / var_share_full)``; concentration and
    correlation map to ``high_score`` above their high cut, ``medium_score`` above
    their medium cut, else ``low_score``. CRITICAL when the score reaches
    ``critical`` or VaR99 exceeds ``critical_var99_share`` of gross exposure.
    """

    weight_total_risk: float = 0.4
    weight_concentration: float = 0.3
    weight_correlation: float = 0.3
    var_share_full: float = 0.10
    concentration_high: float = 0.5
    concentration_medium: float = 0.3
    correlation_high: float = 0.7
    correlation_medium: float = 0.5
    high_score: float = 1.0
    medium_score: float = 0.5
    low_score: float = 0.0
    medium: float = 0.4
    high: float = 0.7
    critical: float = 0.85
    critical_var99_share: float = 0.15


@dataclass(frozen=True)
class RiskConfig:
    """All knobs of the risk core. Times in ms, money in USD, shares as fractions."""

    bar_ms: int = 1_000
    window_bars: int = 500
    ewma_lambda: float = 0.94
    backtest_confidence: float = 0.99
    backtest_window: int = 250
    backtest_history: int = 1_000
    horizon_bars: int = 1
    volatility_horizon_bars: int = 0  # 0 = one day of bars (86_400_000 / bar_ms)
    gas_window_ms: int = 300_000
    health_window_ms: int = 3_600_000
    health_step_ms: int = 300_000
    default_spread_bps: float = 10.0
    liquidity_ewma_alpha: float = 0.05
    stablecoins: tuple[str, ...] = ("USDC", "USDT", "DAI")
    kind_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    gas_cost_share: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_GAS_COST_SHARE)
    )
    rating: RatingThresholds = field(default_factory=RatingThresholds)
    position_risk_high_pct: float = 5.0
    position_risk_medium_pct: float = 2.0

    def kind_weight(self, kind: str) -> float:
        """Risk multiplier of a position kind (1.0 when the kind is not configured)."""
        return float(self.kind_weights.get(kind, self.kind_weights.get("other", 1.0)))

    def vol_horizon(self) -> int:
        """Bars in the horizon used for the headline ``volatility`` figure."""
        if self.volatility_horizon_bars > 0:
            return self.volatility_horizon_bars
        return max(1, 86_400_000 // self.bar_ms)


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RiskConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**raw)


def risk_config_from_dict(raw: dict[str, Any]) -> RiskConfig:
    """Build a :class:`RiskConfig` from a parsed mapping, rejecting unknown keys."""
    raw = dict(raw or {})
    rating = _build(RatingThresholds, dict(raw.pop("rating", {}) or {}), "rating")
    if "stablecoins" in raw:
        raw["stablecoins"] = tuple(raw["stablecoins"])
    for key, default in (("kind_weights", DEFAULT_KIND_WEIGHTS),
                         ("gas_cost_share", DEFAULT_GAS_COST_SHARE)):
        if key in raw:
            raw[key] = {**default, **{str(k): float(v) for k, v in raw[key].items()}}
    cfg: RiskConfig = _build(RiskConfig, {**raw, "rating": rating}, "risk config")
    if cfg.bar_ms <= 0 or cfg.window_bars < 2:
        raise RiskConfigError("bar_ms must be > 0 and window_bars >= 2")
    if not 0.0 < cfg.ewma_lambda < 1.0:
        raise RiskConfigError("ewma_lambda must be in (0, 1)")
    return cfg


def load_risk_config(path: str | Path) -> RiskConfig:
    """Load ``risk.yaml`` (see ``deploy/config/risk.yaml`` for the documented keys)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RiskConfigError(f"cannot read risk config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RiskConfigError(f"{path}: top level must be a mapping")
    return risk_config_from_dict(raw)

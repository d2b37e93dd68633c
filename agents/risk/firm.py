"""The firm: every portfolio's risk aggregated by historical simulation (pure, numpy only).

Conventions (as :mod:`agents.risk.var`): P&L in USD, positive = profit; VaR and ES positive =
loss. The portfolios' scenario P&L vectors share their scenarios (the same return bars of the
same replicated market window), so the firm's P&L in scenario ``s`` is the sum of the portfolios'
P&L in ``s``, and the firm's VaR/ES are read from that joint vector. They are not the sum of
the portfolios' VaRs: losses that do not come in the same scenarios offset each other, and
``diversification_usd`` = sum of stand-alone VaRs - firm VaR (>= 0 for ES, usually for VaR).

>>> import numpy as np
>>> firm = aggregate({"a": np.array([-10.0, 0.0, 5.0, 1.0]), "b": np.array([8.0, -6.0, 0.0, 1.0])},
...                  confidences=(0.75,))
>>> firm.var[0.75], firm.standalone_var["a"][0.75], firm.standalone_var["b"][0.75]
(6.0, 10.0, 6.0)
>>> firm.diversification_usd(0.75)
10.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agents.risk import var as varlib

CONFIDENCES = (0.95, 0.99)


@dataclass(frozen=True)
class FirmRisk:
    """Joint historical VaR/ES of the firm and the portfolios' stand-alone figures, by confidence."""

    n_scenarios: int
    pnl: np.ndarray
    """The firm's scenario P&L vector (USD), the sum of the portfolios' vectors."""
    var: Mapping[float, float]
    es: Mapping[float, float]
    standalone_var: Mapping[str, Mapping[float, float]]
    standalone_es: Mapping[str, Mapping[float, float]]

    def diversification_usd(self, confidence: float) -> float:
        """Sum of the portfolios' stand-alone VaRs minus the firm's VaR (USD)."""
        return sum(v[confidence] for v in self.standalone_var.values()) - self.var[confidence]


def joint_pnl(vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """The firm's scenario P&L: the element-wise sum of the portfolios' vectors, which must have
    the same length (one value per shared scenario)."""
    arrays = [np.asarray(v, dtype=float) for v in vectors.values()]
    if not arrays:
        return np.zeros(0)
    n = arrays[0].shape
    if any(a.ndim != 1 or a.shape != n for a in arrays):
        raise ValueError("every portfolio needs a 1-D P&L vector over the same scenarios")
    return np.sum(arrays, axis=0)


def aggregate(vectors: Mapping[str, np.ndarray], confidences: Sequence[float] = CONFIDENCES) -> FirmRisk:
    """VaR/ES of the joint P&L vector, and of each portfolio on its own; zeros without scenarios."""
    pnl = joint_pnl(vectors)

    def tails(p: np.ndarray) -> tuple[dict[float, float], dict[float, float]]:
        if p.size == 0:
            return dict.fromkeys(confidences, 0.0), dict.fromkeys(confidences, 0.0)
        pairs = {c: varlib.historical_var_es(p, c) for c in confidences}
        return {c: v for c, (v, _) in pairs.items()}, {c: e for c, (_, e) in pairs.items()}

    var, es = tails(pnl)
    alone = {name: tails(np.asarray(v, dtype=float)) for name, v in vectors.items()}
    return FirmRisk(int(pnl.size), pnl, var, es, {n: a[0] for n, a in alone.items()},
                    {n: a[1] for n, a in alone.items()})


def scenario_pnl(exposure_by_asset: Mapping[str, float], asset_columns: Mapping[str, int],
                 simple_returns: np.ndarray) -> np.ndarray:
    """One portfolio's scenario P&L from its net signed USD exposure per asset and the shared
    scenarios' simple returns (rows: scenarios, columns: ``asset_columns``); an asset without a
    column (never priced here) has no return and adds nothing."""
    e = np.zeros(simple_returns.shape[1] if simple_returns.ndim == 2 else 0)
    for asset, usd in exposure_by_asset.items():
        col = asset_columns.get(asset)
        if col is not None and col < e.size:
            e[col] += float(usd)
    return simple_returns @ e if simple_returns.size else np.zeros(simple_returns.shape[0])

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
from typing import Any

import numpy as np

from agents.risk import rating as ratinglib
from agents.risk import var as varlib
from agents.risk.book import concentration
from agents.risk.engine import correlation_risk

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


def firm_overview(snapshots: Mapping[str, Mapping[str, Any]], asset_columns: Mapping[str, int],
                  simple_returns: np.ndarray, correlation: np.ndarray,
                  thresholds: ratinglib.RatingThresholds) -> dict[str, Any]:
    """The firm's figures from every portfolio's latest snapshot (its net signed exposure per
    asset, ``exposure_by_asset``) and the shared scenarios (``simple_returns``: rows scenarios,
    columns ``asset_columns``): exposures summed; VaR/ES 95/99 from the joint P&L vector;
    ``sum_of_var_*`` and ``diversification_*`` beside them; concentration, correlation risk
    (``correlation``: the assets' correlation matrix) and the rating of the firm's net exposures,
    by the same rules as a portfolio's. Money in USD; VaR/ES positive = loss, one bar."""
    n = simple_returns.shape[1] if simple_returns.ndim == 2 else 0
    vectors = {name: scenario_pnl(s.get("exposure_by_asset") or {}, asset_columns, simple_returns)
               for name, s in snapshots.items()}
    risk = aggregate(vectors)
    net_by_asset = np.zeros(n)
    for s in snapshots.values():
        for asset, usd in (s.get("exposure_by_asset") or {}).items():
            col = asset_columns.get(asset)
            if col is not None and col < n:
                net_by_asset[col] += float(usd)
    gross = float(sum(float(s.get("total_exposure_usd", 0.0) or 0.0) for s in snapshots.values()))
    conc, hhi = concentration(net_by_asset, gross) if n else (0.0, 0.0)
    corr_risk = correlation_risk(correlation[:n, :n], net_by_asset) if n else 0.0
    rating, score, reasons = ratinglib.rate(risk.var[0.95], risk.var[0.99], gross, conc, corr_risk,
                                            thresholds)
    return {
        "portfolios": sorted(snapshots),
        "total_exposure_usd": gross,
        "net_exposure_usd": float(sum(float(s.get("net_exposure_usd", 0.0) or 0.0)
                                      for s in snapshots.values())),
        "active_positions": int(sum(int(s.get("active_positions", 0) or 0) for s in snapshots.values())),
        "var_95_usd": risk.var[0.95], "var_99_usd": risk.var[0.99],
        "es_95_usd": risk.es[0.95], "es_99_usd": risk.es[0.99],
        "sum_of_var_95_usd": sum(v[0.95] for v in risk.standalone_var.values()),
        "sum_of_var_99_usd": sum(v[0.99] for v in risk.standalone_var.values()),
        "diversification_95_usd": risk.diversification_usd(0.95),
        "diversification_99_usd": risk.diversification_usd(0.99),
        "n_scenarios": risk.n_scenarios,
        "max_concentration": conc, "hhi": hhi, "correlation_risk": corr_risk,
        "rating": rating.value, "rating_score": score, "rating_reasons": reasons,
        "standalone": {name: {"var_95_usd": risk.standalone_var[name][0.95],
                              "var_99_usd": risk.standalone_var[name][0.99],
                              "es_99_usd": risk.standalone_es[name][0.99]} for name in sorted(vectors)},
    }

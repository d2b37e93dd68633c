"""Stress scenarios (``deploy/config/scenarios.yaml``) applied to a book.

A scenario's P&L (USD, positive = profit) is the sum of per-leg parts:

* price: ``leg_exposure * shock[asset]``. ``price_shocks`` keys are asset
  names, ``"*"`` (every asset not in the stablecoin list) or ``"@stablecoins"``;
  a named asset wins over the wildcards.
* liquidity (when ``depth_multiplier`` or ``spread_multiplier`` is set): minus
  the cost of exiting every asset under stressed depth and spread
  (:func:`agents.risk.var.exit_cost_usd`), allocated to legs by |exposure|.
* gas (``gas_multiplier``): minus ``(m - 1) * |leg exposure| * gas_cost_share[kind]``
  for the kinds in ``gas_kinds`` (all configured kinds when omitted).
* covariance stress (``vol_multiplier``, ``correlation``): the stressed covariance
  is ``D C' D`` with stdevs times the multiplier and every off-diagonal
  correlation set to ``correlation``; ``stressed_var_99_usd`` is the parametric
  VaR under it. With ``pnl_includes_stressed_var: true`` minus each leg's Euler
  component of that VaR is added to the P&L (correlation spike does this).

``share_of_exposure`` = pnl_usd / gross exposure (signed fraction);
``worst_position`` = {position_id, pnl_usd} of the lowest position P&L;
``position_impacts`` = position_id -> P&L of the (at most 10) worst positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.risk import var as varlib
from agents.risk.errors import RiskConfigError

MAX_IMPACTS = 10  # position_impacts lists at most this many worst positions
_FIELDS = {"description", "price_shocks", "vol_multiplier", "correlation", "depth_multiplier",
           "spread_multiplier", "gas_multiplier", "gas_kinds", "pnl_includes_stressed_var"}


@dataclass(frozen=True)
class Scenario:
    """One stress scenario (fractions: -0.2 = -20 %; multipliers: 2.0 = x2)."""

    name: str
    description: str = ""
    price_shocks: dict[str, float] = field(default_factory=dict)
    vol_multiplier: float = 1.0
    correlation: float | None = None
    depth_multiplier: float = 1.0
    spread_multiplier: float = 1.0
    gas_multiplier: float = 1.0
    gas_kinds: tuple[str, ...] | None = None
    pnl_includes_stressed_var: bool = False

    @property
    def stresses_liquidity(self) -> bool:
        """True when depth or spread is stressed."""
        return self.depth_multiplier != 1.0 or self.spread_multiplier != 1.0

    @property
    def stresses_covariance(self) -> bool:
        """True when volatility or correlation is stressed."""
        return self.vol_multiplier != 1.0 or self.correlation is not None


def scenario_from_dict(name: str, raw: dict[str, Any]) -> Scenario:
    """Validate and build one scenario from its YAML mapping."""
    if not isinstance(raw, dict):
        raise RiskConfigError(f"scenario {name!r}: must be a mapping")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise RiskConfigError(f"scenario {name!r}: unknown keys {unknown}")
    shocks = {str(k): float(v) for k, v in (raw.get("price_shocks") or {}).items()}
    if any(v <= -1.0 for v in shocks.values()):
        raise RiskConfigError(f"scenario {name!r}: a price shock must be > -1 (-100 %)")
    corr = raw.get("correlation")
    if corr is not None and not -1.0 < float(corr) < 1.0:
        raise RiskConfigError(f"scenario {name!r}: correlation must be in (-1, 1)")
    mults = {k: float(raw.get(k, 1.0)) for k in
             ("vol_multiplier", "depth_multiplier", "spread_multiplier", "gas_multiplier")}
    if any(v < 0 for v in mults.values()):
        raise RiskConfigError(f"scenario {name!r}: multipliers must be >= 0")
    kinds = raw.get("gas_kinds")
    return Scenario(name=name, description=str(raw.get("description", "")), price_shocks=shocks,
                    correlation=None if corr is None else float(corr),
                    gas_kinds=None if kinds is None else tuple(str(k) for k in kinds),
                    pnl_includes_stressed_var=bool(raw.get("pnl_includes_stressed_var", False)),
                    **mults)


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Load ``scenarios.yaml`` (top-level ``scenarios:`` mapping name -> fields)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RiskConfigError(f"cannot read scenarios {path}: {exc}") from exc
    items = raw.get("scenarios") if isinstance(raw, dict) else None
    if not isinstance(items, dict) or not items:
        raise RiskConfigError(f"{path}: expected a non-empty 'scenarios' mapping")
    return [scenario_from_dict(str(name), spec) for name, spec in items.items()]


@dataclass
class StressInputs:
    """Everything a stress run needs, as aligned numpy arrays (see engine)."""

    asset_names: list[str]
    asset_exposure: np.ndarray      # net USD per asset
    leg_asset: np.ndarray           # asset column per leg
    leg_exposure: np.ndarray        # USD per leg (0 for free rows)
    leg_slot: np.ndarray            # position slot per leg
    leg_active: np.ndarray          # bool per leg
    leg_kind: list[str]             # kind per leg row ("" for free rows)
    slot_ids: list[str | None]      # position id per slot
    cov: np.ndarray                 # per-bar covariance of log returns
    spread_bps: np.ndarray          # per asset
    depth_usd: np.ndarray           # per asset (NaN = unknown)
    gross_usd: float
    stablecoins: tuple[str, ...] = ()
    gas_cost_share: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.99
    slot_live: np.ndarray | None = None  # bool per slot; derived from slot_ids when None
    leg_kind_code: np.ndarray | None = None  # kind code per leg row, instead of ``leg_kind``
    kind_names: tuple[str, ...] = ()         # the names of those codes
    memo: StressMemo | None = None           # kept by the caller across runs (engine)

    def live_slots(self) -> np.ndarray:
        """Bool mask of slots holding an open position (computed once)."""
        if self.slot_live is None:
            self.slot_live = np.fromiter((pid is not None for pid in self.slot_ids), bool,
                                         len(self.slot_ids))
        return self.slot_live


class StressMemo:
    """What a stress run derives from inputs that change rarely: the shock matrix (per scenario
    list and asset names) and each scenario's stressed covariance (per covariance matrix, which
    the engine keeps as one array per bar). Results are the same with or without it."""

    def __init__(self) -> None:
        self._shocks: tuple[tuple[int, ...], tuple[str, ...], np.ndarray] | None = None
        self._cov: np.ndarray | None = None
        self._stressed: dict[int, np.ndarray] = {}

    def shocks(self, scenarios: list[Scenario], inp: StressInputs) -> np.ndarray:
        key, names = tuple(id(sc) for sc in scenarios), tuple(inp.asset_names)
        if self._shocks is None or self._shocks[0] != key or self._shocks[1] != names:
            self._shocks = (key, names, _shock_matrix(scenarios, inp))
        return self._shocks[2]

    def stressed(self, sc: Scenario, cov: np.ndarray) -> np.ndarray:
        if self._cov is not cov:
            self._cov, self._stressed = cov, {}
        out = self._stressed.get(id(sc))
        if out is None:
            out = self._stressed[id(sc)] = stressed_covariance(cov, sc.vol_multiplier, sc.correlation)
        return out


def _shock_matrix(scenarios: list[Scenario], inp: StressInputs) -> np.ndarray:
    out = np.zeros((len(scenarios), len(inp.asset_names)))
    for i, sc in enumerate(scenarios):
        out[i] = _shock_vector(sc, inp)
    return out


def _shock_vector(sc: Scenario, inp: StressInputs) -> np.ndarray:
    stables = set(inp.stablecoins)
    out = np.zeros(len(inp.asset_names))
    for i, name in enumerate(inp.asset_names):
        if name in sc.price_shocks:
            out[i] = sc.price_shocks[name]
        elif name in stables:
            out[i] = sc.price_shocks.get("@stablecoins", 0.0)
        else:
            out[i] = sc.price_shocks.get("*", 0.0)
    return out


def stressed_covariance(cov: np.ndarray, vol_multiplier: float,
                        correlation: float | None) -> np.ndarray:
    """``D C' D``: stdevs times ``vol_multiplier``; off-diagonals set to ``correlation``."""
    sd0 = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if correlation is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.outer(sd0, sd0)
        corr[~np.isfinite(corr)] = 0.0
    else:
        corr = np.full(cov.shape, float(correlation))
    np.fill_diagonal(corr, 1.0)
    sd = sd0 * vol_multiplier
    return corr * np.outer(sd, sd)


def _liquidity_legs(sc: Scenario, inp: StressInputs) -> np.ndarray:
    cost = varlib.exit_cost_usd(inp.asset_exposure, inp.spread_bps * sc.spread_multiplier,
                                inp.depth_usd * sc.depth_multiplier)
    leg_abs = np.abs(inp.leg_exposure)
    per_asset_abs = np.bincount(inp.leg_asset, weights=leg_abs, minlength=cost.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(per_asset_abs[inp.leg_asset] > 0,
                         leg_abs / per_asset_abs[inp.leg_asset], 0.0)
    return -cost[inp.leg_asset] * share


def _gas_legs(sc: Scenario, inp: StressInputs) -> np.ndarray:
    kinds = sc.gas_kinds

    def share(k: str) -> float:
        return inp.gas_cost_share.get(k, 0.0) if (kinds is None or k in kinds) else 0.0

    if inp.leg_kind_code is not None:  # per kind, then per leg (free rows are masked later)
        shares = np.array([share(k) for k in inp.kind_names] or [0.0])[inp.leg_kind_code]
    else:
        shares = np.array([share(k) for k in inp.leg_kind])
    return -(sc.gas_multiplier - 1.0) * np.abs(inp.leg_exposure) * shares


def run_scenario(sc: Scenario, inp: StressInputs) -> dict[str, Any]:
    """Evaluate one scenario; returns pnl_usd, share_of_exposure, worst_position, ..."""
    return _run([sc], inp)[0]


def run_all(scenarios: list[Scenario], inp: StressInputs) -> tuple[dict[str, Any], str | None]:
    """All scenarios plus the name of the most dangerous (lowest P&L; ties by name)."""
    results = dict(zip([sc.name for sc in scenarios], _run(scenarios, inp), strict=True))
    worst = min(results, key=lambda n: (results[n]["pnl_usd"], n)) if results else None
    return results, worst


def _run(scenarios: list[Scenario], inp: StressInputs) -> list[dict[str, Any]]:
    """The scenarios' results, computed together: one row of leg P&L per scenario (each row is
    what one scenario alone gives, element for element, in the same order of operations)."""
    if not scenarios:
        return []
    memo = inp.memo or StressMemo()
    shocks = memo.shocks(scenarios, inp)
    legs = inp.leg_exposure * shocks[:, inp.leg_asset]
    extra: list[dict[str, Any]] = [{} for _ in scenarios]
    for i, sc in enumerate(scenarios):
        if sc.stresses_liquidity:
            legs[i] = legs[i] + _liquidity_legs(sc, inp)
        if sc.gas_multiplier != 1.0 and legs.shape[1]:
            legs[i] = legs[i] + _gas_legs(sc, inp)
        if sc.stresses_covariance:
            cov_s = memo.stressed(sc, inp.cov)
            sigma = varlib.portfolio_sigma(cov_s, inp.asset_exposure)
            extra[i]["stressed_var_99_usd"] = varlib.parametric_var_es(sigma, inp.confidence)[0]
            if sc.pnl_includes_stressed_var:
                legs[i] = legs[i] - varlib.parametric_components(
                    cov_s, inp.asset_exposure, inp.leg_asset, inp.leg_exposure, inp.confidence)
    legs = np.where(inp.leg_active, legs, 0.0)
    pnl = [float(row.sum()) for row in legs]  # 1-D sums: an axis=1 sum adds in another order
    n_slots = len(inp.slot_ids)
    n_sc = len(scenarios)
    # one bincount over (scenario, slot) bins: each bin sums its legs in row order, as per row
    index = (np.arange(n_sc)[:, None] * n_slots + inp.leg_slot).ravel()
    per_slot = np.bincount(index, weights=legs.ravel(), minlength=n_sc * n_slots).reshape(n_sc, n_slots)
    live = inp.live_slots() & np.isfinite(per_slot)  # a NaN P&L has no place in the ranking
    n_live = live.sum(axis=1).tolist()
    masked = np.where(live, per_slot, np.inf)
    lows = masked.min(axis=1, initial=np.inf)
    top = np.argsort(masked, axis=1, kind="stable")[:, :MAX_IMPACTS].tolist()
    results = []
    for i in range(n_sc):
        out = extra[i]
        worst = None
        if n_live[i]:
            row = masked[i]
            ties = np.flatnonzero(row == lows[i])
            idx = min(ties.tolist(), key=lambda j: str(inp.slot_ids[j]))  # ties: smallest id
            values = per_slot[i]
            worst = {"position_id": inp.slot_ids[idx], "pnl_usd": float(values[idx])}
            out["position_impacts"] = {str(inp.slot_ids[j]): float(values[j])
                                       for j in top[i][: min(MAX_IMPACTS, n_live[i])]}
        out.update(pnl_usd=pnl[i], share_of_exposure=pnl[i] / inp.gross_usd if inp.gross_usd else 0.0,
                   worst_position=worst)
        results.append({k: out[k] for k in sorted(out)})
    return results

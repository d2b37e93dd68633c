"""Portfolio book: positions applied idempotently, exposures in USD.

* Idempotency: a record is applied only if its ``seq`` is greater than the last
  applied ``seq`` of that ``position_id`` (closed positions remember their last
  seq). Equal seq counts as ``duplicates``, lower seq as ``stale``.
* A position is one or more *legs* (``legs`` replaces asset/quantity/notional).
  Leg exposure in USD = ``quantity * latest price`` of its asset; before any
  price for the asset, ``notional_usd``.
* Legs live in struct-of-arrays numpy storage (one row per leg, rows reused via
  a free list), so applying a record is O(legs) and a full recompute is
  vectorised. Per-asset sums of quantity and notional are kept incrementally.
* Exposure conventions: ``exposure_by_asset`` is the *net* signed USD per asset
  (what drives VaR); gross = sum of |leg exposure|; net = sum of leg exposures;
  groupings by strategy/kind/protocol/chain are gross (sum of |leg exposure|).
  Max concentration = max_a |net asset exposure| / gross; HHI = sum of squared
  shares of |net asset exposure| in their total (1/n .. 1).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from agents.risk.bars import AssetIndex
from agents.risk.errors import RiskInputError

ACTIONS = ("open", "update", "close")
GROUPS = ("strategy", "kind", "protocol", "chain")


class CodeTable:
    """Interning table ``name -> small int`` for grouping labels."""

    def __init__(self) -> None:
        self._idx: dict[str, int] = {}
        self.names: list[str] = []

    def intern(self, name: str) -> int:
        """Code of ``name`` (allocated on first sight)."""
        idx = self._idx.get(name)
        if idx is None:
            idx = len(self.names)
            self._idx[name] = idx
            self.names.append(name)
        return idx


class _Position:
    __slots__ = ("asset", "chain", "kind", "pid", "protocol", "rows", "seq", "slot", "strategy")

    def __init__(self, pid: str, slot: int) -> None:
        self.pid = pid
        self.slot = slot
        self.seq = -1
        self.rows: list[int] = []
        self.kind = self.strategy = self.protocol = self.chain = self.asset = ""


class Leg(NamedTuple):
    """One leg of a position record: asset, signed quantity, signed entry notional USD."""

    asset: str
    quantity: float
    notional_usd: float


def _num(rec: dict[str, Any], key: str, default: float | None = None) -> float:
    val = rec.get(key, default)
    if val is None or isinstance(val, bool):
        raise RiskInputError(f"position record: field {key!r} missing or not a number")
    try:
        out = float(val)
    except (TypeError, ValueError) as exc:
        raise RiskInputError(f"position record: field {key!r}={val!r} is not a number") from exc
    if not math.isfinite(out):
        raise RiskInputError(f"position record: field {key!r} must be finite")
    return out


def parse_legs(rec: dict[str, Any]) -> list[Leg]:
    """Legs of an open/update record (``legs`` if present, else the main asset)."""
    legs = rec.get("legs")
    if legs:
        if not isinstance(legs, list):
            raise RiskInputError("position record: 'legs' must be a list")
        out = []
        for leg in legs:
            if not isinstance(leg, dict) or not isinstance(leg.get("asset"), str):
                raise RiskInputError("position record: each leg needs an 'asset' string")
            out.append(Leg(leg["asset"], _num(leg, "quantity"), _num(leg, "notional_usd", 0.0)))
        return out
    asset = rec.get("asset")
    if not isinstance(asset, str) or not asset:
        raise RiskInputError("position record: field 'asset' missing")
    return [Leg(asset, _num(rec, "quantity"), _num(rec, "notional_usd", 0.0))]


class Book:
    """Positions of one portfolio with incremental per-asset sums."""

    def __init__(self, assets: AssetIndex, kind_weights: dict[str, float] | None = None,
                 capacity: int = 1024) -> None:
        self.assets = assets
        self.kind_weights = dict(kind_weights or {})
        self.codes = {g: CodeTable() for g in GROUPS}
        self.positions: dict[str, _Position] = {}
        self.closed_seq: dict[str, int] = {}
        self.slot_ids: list[str | None] = []
        self._free_slots: list[int] = []
        self._free_rows: list[int] = []
        self.n_rows = 0  # high-water mark of used leg rows
        self._cap = 0
        self._grow_rows(capacity)
        self.asset_qty = np.zeros(16)
        self.asset_notional = np.zeros(16)
        self.applied = self.stale = self.duplicates = 0
        self.last_delta: list[tuple[int, float, float]] = []

    # ---- storage -------------------------------------------------------
    def _grow_rows(self, cap: int) -> None:
        def grow(arr: np.ndarray | None, dtype: type) -> np.ndarray:
            new: np.ndarray = np.zeros(cap, dtype=dtype)
            if arr is not None:
                new[: arr.shape[0]] = arr
            return new

        self.leg_asset = grow(getattr(self, "leg_asset", None), np.int64)
        self.leg_qty = grow(getattr(self, "leg_qty", None), np.float64)
        self.leg_notional = grow(getattr(self, "leg_notional", None), np.float64)
        self.leg_slot = grow(getattr(self, "leg_slot", None), np.int64)
        self.leg_weight = grow(getattr(self, "leg_weight", None), np.float64)
        self.leg_active = grow(getattr(self, "leg_active", None), np.bool_)
        self.leg_group = {g: grow(getattr(self, "leg_group", {}).get(g), np.int64)
                          for g in GROUPS}
        self._cap = cap

    def _ensure_assets(self) -> None:
        n = len(self.assets)
        if n > self.asset_qty.shape[0]:
            size = max(n, 2 * self.asset_qty.shape[0])
            for name in ("asset_qty", "asset_notional"):
                old = getattr(self, name)
                new = np.zeros(size)
                new[: old.shape[0]] = old
                setattr(self, name, new)

    def _alloc_row(self) -> int:
        if self._free_rows:
            return self._free_rows.pop()
        if self.n_rows >= self._cap:
            self._grow_rows(2 * self._cap)
        self.n_rows += 1
        return self.n_rows - 1

    # ---- applying records ----------------------------------------------
    def apply(self, rec: dict[str, Any]) -> bool:
        """Apply one ``mev.positions`` record; False if stale/duplicate (counted).

        Raises :class:`RiskInputError` for malformed records. ``last_delta``
        lists ``(asset_col, d_quantity, d_notional_usd)`` of the change.
        """
        pid = rec.get("position_id")
        if not isinstance(pid, str) or not pid:
            raise RiskInputError("position record: 'position_id' missing")
        seq = rec.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise RiskInputError(f"position record {pid}: 'seq' must be an int >= 0")
        action = rec.get("action")
        if action not in ACTIONS:
            raise RiskInputError(f"position record {pid}: action {action!r} not in {ACTIONS}")
        pos = self.positions.get(pid)
        last = pos.seq if pos is not None else self.closed_seq.get(pid, -1)
        if seq <= last:
            if seq == last:
                self.duplicates += 1
            else:
                self.stale += 1
            return False
        legs = None if action == "close" else parse_legs(rec)
        self.last_delta = []
        if action == "close":
            if pos is not None:
                self._clear(pos)
                del self.positions[pid]
                self.slot_ids[pos.slot] = None
                self._free_slots.append(pos.slot)
            self.closed_seq[pid] = seq
        else:
            if pos is None:
                pos = self._new_position(pid)
                self.closed_seq.pop(pid, None)
            self._set(pos, rec, legs or [])
            pos.seq = seq
        self.applied += 1
        return True

    def _new_position(self, pid: str) -> _Position:
        if self._free_slots:
            slot = self._free_slots.pop()
            self.slot_ids[slot] = pid
        else:
            slot = len(self.slot_ids)
            self.slot_ids.append(pid)
        pos = _Position(pid, slot)
        self.positions[pid] = pos
        return pos

    def _clear(self, pos: _Position) -> None:
        for row in pos.rows:
            a = int(self.leg_asset[row])
            q, n = float(self.leg_qty[row]), float(self.leg_notional[row])
            self.asset_qty[a] -= q
            self.asset_notional[a] -= n
            self.last_delta.append((a, -q, -n))
            self.leg_qty[row] = 0.0
            self.leg_notional[row] = 0.0
            self.leg_active[row] = False
            self._free_rows.append(row)
        pos.rows = []

    def _update_in_place(self, pos: _Position, rec: dict[str, Any], legs: list[Leg]) -> bool:
        """Fast path: same labels and same leg assets -> patch quantities only."""
        if (len(legs) != len(pos.rows) or rec.get("kind", "other") != pos.kind
                or rec.get("strategy", "") != pos.strategy
                or rec.get("protocol", "") != pos.protocol or rec.get("chain", "") != pos.chain):
            return False
        cols = [self.assets.get(leg.asset) for leg in legs]
        rows = pos.rows
        if any(c is None or c != self.leg_asset[r] for c, r in zip(cols, rows, strict=True)):
            return False
        for leg, row, a in zip(legs, rows, cols, strict=True):
            dq = leg.quantity - float(self.leg_qty[row])
            dn = leg.notional_usd - float(self.leg_notional[row])
            self.leg_qty[row] = leg.quantity
            self.leg_notional[row] = leg.notional_usd
            self.asset_qty[a] += dq
            self.asset_notional[a] += dn
            self.last_delta.append((a, dq, dn))  # type: ignore[arg-type]
        return True

    def _set(self, pos: _Position, rec: dict[str, Any], legs: list[Leg]) -> None:
        if pos.rows and self._update_in_place(pos, rec, legs):
            return
        self._clear(pos)
        kind = str(rec.get("kind", "other"))
        pos.kind, pos.strategy = kind, str(rec.get("strategy", ""))
        pos.protocol, pos.chain = str(rec.get("protocol", "")), str(rec.get("chain", ""))
        pos.asset = legs[0].asset if legs else str(rec.get("asset", ""))
        codes = [self.codes[g].intern(getattr(pos, g)) for g in GROUPS]
        weight = self.kind_weights.get(kind, self.kind_weights.get("other", 1.0))
        for leg in legs:
            a = self.assets.intern(leg.asset)
            self._ensure_assets()
            row = self._alloc_row()
            self.leg_asset[row] = a
            self.leg_qty[row] = leg.quantity
            self.leg_notional[row] = leg.notional_usd
            self.leg_slot[row] = pos.slot
            self.leg_weight[row] = weight
            self.leg_active[row] = True
            for g, code in zip(GROUPS, codes, strict=True):
                self.leg_group[g][row] = code
            self.asset_qty[a] += leg.quantity
            self.asset_notional[a] += leg.notional_usd
            self.last_delta.append((a, leg.quantity, leg.notional_usd))
            pos.rows.append(row)

    # ---- exposures -----------------------------------------------------
    def asset_exposures(self, prices: np.ndarray) -> np.ndarray:
        """Net signed USD exposure per asset column; ``prices`` NaN = no price yet."""
        self._ensure_assets()
        n = len(self.assets)
        p = prices[:n]
        qty, notional = self.asset_qty[:n], self.asset_notional[:n]
        missing = np.isnan(p)  # prices are finite or NaN: 0 where NaN is nan_to_num's answer
        return np.where(missing, notional, qty * np.where(missing, 0.0, p))

    def leg_exposures(self, prices: np.ndarray) -> np.ndarray:
        """USD exposure of each leg row ``[0, n_rows)`` (0 for free rows)."""
        m = self.n_rows
        p = prices[self.leg_asset[:m]]
        missing = np.isnan(p)
        return np.where(missing, self.leg_notional[:m], self.leg_qty[:m] * np.where(missing, 0.0, p))

    def exposure_delta(self, prices: np.ndarray) -> dict[int, float]:
        """USD change of each asset's net exposure caused by the last applied record."""
        out: dict[int, float] = {}
        for a, dq, dn in self.last_delta:
            p = prices[a]
            out[a] = out.get(a, 0.0) + (dn if math.isnan(p) else dq * p)
        return out

    def group_exposures(self, group: str, leg_abs: np.ndarray) -> dict[str, float]:
        """Gross USD exposure per label of ``group`` from |leg exposure|."""
        table = self.codes[group]
        if not table.names:
            return {}
        sums = np.bincount(self.leg_group[group][: self.n_rows], weights=leg_abs,
                           minlength=len(table.names))
        active = np.zeros(len(table.names), dtype=bool)
        active[self.leg_group[group][: self.n_rows][self.leg_active[: self.n_rows]]] = True
        return {table.names[i]: float(sums[i]) for i in range(len(table.names)) if active[i]}

    def per_slot(self, leg_values: np.ndarray) -> np.ndarray:
        """Sum a per-leg array into a per-position-slot array."""
        return np.bincount(self.leg_slot[: self.n_rows], weights=leg_values,
                           minlength=len(self.slot_ids))

    def risk_weighted_exposure(self, leg_abs: np.ndarray) -> float:
        """Sum of |leg exposure| times its kind weight (seed's crude multiplier), USD."""
        return float(leg_abs @ self.leg_weight[: self.n_rows])

    def __len__(self) -> int:
        return len(self.positions)


def concentration(asset_exposure: np.ndarray, gross_usd: float) -> tuple[float, float]:
    """``(max |asset exposure| / gross, HHI of |asset exposure| shares)``; zeros if empty."""
    mags = np.abs(asset_exposure)
    total = float(mags.sum())
    if total <= 0.0 or gross_usd <= 0.0:
        return 0.0, 0.0
    shares = mags / total
    return float(mags.max() / gross_usd), float(shares @ shares)

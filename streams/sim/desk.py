"""The trading desk: strategies opening, updating and closing positions, their interval
stats, and the HALT / REDUCE / RESUME controls they obey.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.sim.config import SimConfig, StrategySpec
from streams.sim.errors import SimulatorError
from streams.sim.market import MarketState


class TradingState(enum.IntEnum):
    """A scope's trading state; the most restrictive of strategy, portfolio and global wins."""

    ACTIVE = 0
    REDUCING = 1
    HALTED = 2


_COMMANDS = {"HALT": TradingState.HALTED, "REDUCE": TradingState.REDUCING,
             "RESUME": TradingState.ACTIVE}


@dataclass
class DeskEffects:
    """Incident effects on the desk at one instant."""

    revert_mult: dict[str, float] = field(default_factory=dict)  # strategy or "all" -> factor
    buildup: Buildup | None = None


@dataclass(frozen=True)
class Buildup:
    """A portfolio piling into one asset, ramping linearly to `target_usd` over the window."""

    portfolio: str
    asset: str
    size_mult: float
    target_usd: float
    start_ms: int
    end_ms: int

    def due_usd(self, ts_ms: int) -> float:
        return self.target_usd * min(1.0, (ts_ms - self.start_ms + 1) / (self.end_ms - self.start_ms))


@dataclass
class _Leg:
    asset: int
    quantity: float
    entry_price_usd: float


@dataclass
class _Position:
    position_id: str
    spec: StrategySpec
    legs: list[_Leg]
    due_ms: int
    seq: int = 0


class Desk:
    """Positions book and stats of every configured strategy."""

    def __init__(self, config: SimConfig, rng: np.random.Generator) -> None:
        self.cfg = config
        self.rng = rng
        self.book: dict[str, list[_Position]] = {s.name: [] for s in config.strategies}
        self.opened: dict[str, int] = {s.name: 0 for s in config.strategies}
        self.controls: dict[str, TradingState] = {}
        self._weights = np.array([s.weight for s in config.strategies], dtype=float)
        self._hedge = config.asset_index("USDC")

    # -- controls -------------------------------------------------------------------------
    def apply_control(self, control: Mapping[str, Any]) -> None:
        """Apply ``{scope: "strategy:<id>"|"portfolio:<id>"|"global", command: ...}``."""
        scope = control.get("scope")
        command = str(control.get("command", "")).upper()
        if not isinstance(scope, str) or not (
            scope == "global" or scope.startswith(("strategy:", "portfolio:"))
        ):
            raise SimulatorError(f"bad control scope {scope!r}")
        if command not in _COMMANDS:
            raise SimulatorError(f"bad control command {command!r}; expected {list(_COMMANDS)}")
        self.controls[scope] = _COMMANDS[command]

    def state(self, spec: StrategySpec) -> TradingState:
        scopes = ("global", f"portfolio:{spec.portfolio}", f"strategy:{spec.name}")
        return max((self.controls.get(s, TradingState.ACTIVE) for s in scopes),
                   default=TradingState.ACTIVE)

    # -- positions ------------------------------------------------------------------------
    def position_event(self, ts_ms: int, mkt: MarketState, fx: DeskEffects) -> dict | None:
        """One position message from a randomly chosen strategy, or None if it has nothing to do."""
        spec = self._pick(fx)
        state = self.state(spec)
        book = self.book[spec.name]
        if state is TradingState.HALTED:  # unwind, never open
            return self._close(book, min(book, key=lambda p: p.due_ms), ts_ms) if book else None
        b = fx.buildup
        if b is not None and b.portfolio == spec.portfolio:
            asset = self.cfg.asset_index(b.asset)
            if self._piled_usd(b.portfolio, asset) < b.due_usd(ts_ms):  # pile in, hold past the end
                return self._open(spec, ts_ms, mkt, state, asset=asset, size_mult=b.size_mult,
                                  hedged=False, min_due_ms=b.end_ms)
        due = [p for p in book if p.due_ms <= ts_ms]
        if due:
            return self._close(book, min(due, key=lambda p: p.due_ms), ts_ms)
        if len(book) >= spec.max_open:  # at its limit: resize something, or wait
            return self._update(self._any(book), ts_ms, mkt, state) if self.rng.random() < 0.5 else None
        if book and self.rng.random() < 0.3:
            return self._update(self._any(book), ts_ms, mkt, state)
        return self._open(spec, ts_ms, mkt, state)

    def _any(self, book: list[_Position]) -> _Position:
        return book[int(self.rng.integers(len(book)))]

    def _pick(self, fx: DeskEffects) -> StrategySpec:
        w = self._weights
        if fx.buildup:  # the piling portfolio dominates the flow
            w = w * [2.0 if s.portfolio == fx.buildup.portfolio else 1.0
                     for s in self.cfg.strategies]
        cum = np.cumsum(w)
        i = int(np.searchsorted(cum, float(self.rng.random()) * cum[-1], side="right"))
        return self.cfg.strategies[min(i, len(w) - 1)]

    def _piled_usd(self, portfolio: str, asset: int) -> float:
        """Long entry notional the portfolio holds in `asset` without a hedge leg."""
        return sum(p.legs[0].quantity * p.legs[0].entry_price_usd
                   for s in self.cfg.strategies if s.portfolio == portfolio
                   for p in self.book[s.name] if len(p.legs) == 1 and p.legs[0].asset == asset)

    def _open(self, spec: StrategySpec, ts_ms: int, mkt: MarketState, state: TradingState, *,
              asset: int | None = None, size_mult: float = 1.0, hedged: bool | None = None,
              min_due_ms: int = 0) -> dict:
        sign = 1.0  # a forced asset means piling in: always long
        if asset is None:
            asset = self.cfg.asset_index(spec.assets[int(self.rng.integers(len(spec.assets)))])
            if spec.kind in ("arbitrage", "backrun") and self.rng.random() < 0.4:
                sign = -1.0
        size = spec.size_usd * size_mult * float(self.rng.lognormal(0.0, 0.5))
        if state is TradingState.REDUCING:
            size *= 0.5
        p = mkt.price(asset)
        legs = [_Leg(asset, sign * size / p, p)]
        if (spec.hedged if hedged is None else hedged):
            ph = mkt.price(self._hedge)
            hedge_sign = 1.0 if spec.kind == "jit" else -sign  # LP holds both; arb is flat
            legs.append(_Leg(self._hedge, hedge_sign * size / ph, ph))
        self.opened[spec.name] += 1
        pid = f"{spec.name}-{self.opened[spec.name]:06d}"
        hold_ms = int(self.rng.exponential(spec.hold_s) * 1000) + 200
        pos = _Position(pid, spec, legs, max(ts_ms + hold_ms, min_due_ms + hold_ms))
        self.book[spec.name].append(pos)
        return self._wire(pos, "open", ts_ms)

    def _update(self, pos: _Position, ts_ms: int, mkt: MarketState, state: TradingState) -> dict:
        f = float(self.rng.uniform(0.5, 1.5))
        if state is TradingState.REDUCING and f > 1.0:
            f = 1.0 + (f - 1.0) * 0.5
        for leg in pos.legs:
            dq = leg.quantity * (f - 1.0)
            if f > 1.0:  # adding at today's price moves the average entry
                p = mkt.price(leg.asset)
                leg.entry_price_usd = (leg.quantity * leg.entry_price_usd + dq * p) / (
                    leg.quantity + dq)
            leg.quantity += dq
        pos.seq += 1
        return self._wire(pos, "update", ts_ms)

    def _close(self, book: list[_Position], pos: _Position, ts_ms: int) -> dict:
        book.remove(pos)
        pos.seq += 1
        return self._wire(pos, "close", ts_ms)

    def _wire(self, pos: _Position, action: str, ts_ms: int) -> dict:
        s = pos.spec
        main = pos.legs[0]
        v: dict[str, Any] = {
            "position_id": pos.position_id, "seq": pos.seq, "action": action,
            "portfolio": s.portfolio, "strategy": s.name, "kind": s.kind, "chain": s.chain,
            "protocol": s.protocol, "asset": self.cfg.assets[main.asset].symbol,
            "quantity": round(main.quantity, 8),
            "notional_usd": round(main.quantity * main.entry_price_usd, 2),
            "entry_price_usd": round(main.entry_price_usd, 6), "ts_ms": ts_ms,
        }
        if len(pos.legs) > 1:
            v["legs"] = [{"asset": self.cfg.assets[g.asset].symbol,
                          "quantity": round(g.quantity, 8),
                          "notional_usd": round(g.quantity * g.entry_price_usd, 2)}
                         for g in pos.legs]
        return v

    # -- interval stats -------------------------------------------------------------------
    def stats_event(self, spec: StrategySpec, ts_ms: int, interval_ms: int, mkt: MarketState,
                    fx: DeskEffects) -> dict:
        """Bundles and P&L of one strategy over the interval ending at `ts_ms`.

        Higher gas means fiercer bidding (fewer inclusions) and dearer reverts; higher
        volatility means more opportunities but more reverts.
        """
        state = self.state(spec)
        activity = {TradingState.ACTIVE: 1.0, TradingState.REDUCING: 0.5,
                    TradingState.HALTED: 0.0}[state]
        j = self.cfg.chain_index(spec.chain)
        g, v = mkt.gas_ratio(j), mkt.vol_ratio
        lam = spec.bundles_per_s * interval_ms / 1000 * activity * min(1.0 + 0.3 * (v - 1), 4.0)
        submitted = int(self.rng.poisson(max(lam, 0.0)))
        storm = fx.revert_mult.get(spec.name, fx.revert_mult.get("all", 1.0))
        p_rev = min(spec.revert_rate * v**0.7 * g**0.3 * storm, 0.9)
        p_inc = min(max(spec.inclusion_rate * g**-0.4 * v**-0.2, 0.01), 0.95)
        reverted = int(self.rng.binomial(submitted, p_rev))
        included = int(self.rng.binomial(submitted - reverted, p_inc))
        gas_eth = (mkt.base_fee(j) + mkt.priority_fee(j)) * 1e-9 * spec.gas_units
        gas_usd = (included + reverted) * gas_eth * mkt.price(mkt.ref)
        gross = 0.0
        if included:
            mean = spec.profit_per_bundle_usd * math.sqrt(max(v, 0.5))
            gross = float(self.rng.gamma(2.0 * included, mean / 2.0))
            gross -= float(self.rng.binomial(included, 0.05)) * mean * 3  # adverse fills
        tips = spec.tip_share * max(gross, 0.0)
        return {
            "strategy": spec.name, "portfolio": spec.portfolio, "chain": spec.chain,
            "ts_ms": ts_ms, "interval_ms": interval_ms, "bundles_submitted": submitted,
            "bundles_included": included, "bundles_reverted": reverted,
            "gas_spent_usd": round(gas_usd, 4), "gross_pnl_usd": round(gross, 4),
            "net_pnl_usd": round(gross - gas_usd - tips, 4),
        }

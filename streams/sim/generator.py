"""Deterministic MEV market / operations simulator (pure: no Kafka, no Faust, no wall clock).

>>> sim = Simulator(seed=7, start_ms=1_700_000_000_000, rate_eps=200, duration_s=2)
>>> events = list(sim)
>>> events == list(Simulator(seed=7, start_ms=1_700_000_000_000, rate_eps=200, duration_s=2))
True
>>> sorted({e.topic for e in events})
['mev.market.ticks', 'mev.positions', 'mev.strategy.stats']
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from streams.sim.badmessages import BAD_KINDS, make_bad_message
from streams.sim.config import SimConfig, default_config
from streams.sim.desk import Buildup, Desk, DeskEffects, TradingState
from streams.sim.errors import SimulatorError
from streams.sim.events import POSITIONS, STATS, TICKS, Event
from streams.sim.incidents import INCIDENT_DEFAULTS, Incident
from streams.sim.market import Effects, MarketState

SOURCES = ("price-oracle", "gas-tracker", "liquidity-monitor")
_CATEGORIES = ("price", "liquidity", "gas", "position")


class Simulator:
    """Yields :class:`Event` in nondecreasing event time, deterministic for a seed.

    `incidents` is a sequence (any order) or a lazy iterable sorted by ``at_s`` (for
    endless runs, e.g. :func:`incident_schedule_every`). `duration_s=None` runs forever.
    Controls from ``risk.controls`` go through :meth:`apply_control` between events.
    """

    def __init__(self, seed: int, start_ms: int, rate_eps: float,
                 duration_s: float | None = None, incidents: Iterable[Incident] = (),
                 config: SimConfig | None = None) -> None:
        if rate_eps <= 0:
            raise SimulatorError("rate_eps must be > 0")
        self.cfg = config or default_config()
        self.seed, self.start_ms, self.rate_eps, self.duration_s = seed, start_ms, rate_eps, duration_s
        ss = np.random.SeedSequence(seed).spawn(3)  # controls never perturb market draws
        self._rng = np.random.Generator(np.random.PCG64(ss[0]))
        self.market = MarketState(self.cfg, np.random.Generator(np.random.PCG64(ss[1])))
        self.desk = Desk(self.cfg, np.random.Generator(np.random.PCG64(ss[2])))
        if isinstance(incidents, Sequence):
            incidents = sorted(incidents, key=lambda i: i.at_s)
            for inc in incidents:
                self._validate(inc)
        self._pending = iter(incidents)
        self._next: Incident | None = next(self._pending, None)
        self.active: list[Incident] = []
        self._fx: Effects | None = None
        self._dfx: DeskEffects | None = None
        self._scheduled: list[tuple[int, int, Event]] = []
        self._tie = itertools.count()
        self._started = False
        n_stats = len(self.cfg.strategies) * 1000 / self.cfg.stats_interval_ms
        self._arrival_eps = max(rate_eps - n_stats, 0.2 * rate_eps)
        mix = self.cfg.mix
        w = np.array([mix.price, mix.liquidity, mix.gas, mix.position], dtype=float)
        self._mix_cum = list(itertools.accumulate(w / w.sum()))

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def apply_control(self, control: Mapping[str, Any]) -> None:
        """Apply a ``risk.controls`` value: scope strategy:<id> | portfolio:<id> | global,
        command HALT | REDUCE | RESUME. Raises :class:`SimulatorError` on a bad control."""
        self.desk.apply_control(control)

    def trading_state(self, strategy: str) -> TradingState:
        spec = next((s for s in self.cfg.strategies if s.name == strategy), None)
        if spec is None:
            raise SimulatorError(f"unknown strategy {strategy!r}")
        return self.desk.state(spec)

    # -- main loop ------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """The event stream. A Simulator is stateful and runs once; make a new one to rerun."""
        if self._started:
            raise SimulatorError("this Simulator already ran; create a new one to rerun")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[Event]:
        end_ms = None if self.duration_s is None else self.start_ms + int(self.duration_s * 1000)
        interval = self.cfg.stats_interval_ms
        arrival_s = float(self._rng.exponential(1 / self._arrival_eps))
        next_stats = self.start_ms + interval
        while True:
            t_arr = self.start_ms + int(arrival_s * 1000)
            t = min(t_arr, next_stats, self._scheduled[0][0] if self._scheduled else t_arr)
            if self._pass_boundaries(t):
                continue  # an incident began: it may have scheduled earlier events
            if end_ms is not None and t >= end_ms:
                return
            if self._scheduled and self._scheduled[0][0] == t:
                yield heapq.heappop(self._scheduled)[2]
            elif next_stats == t:
                yield from self._stats(t, interval)
                next_stats += interval
            else:
                arrival_s += float(self._rng.exponential(1 / self._arrival_eps))
                ev = self._arrival(t)
                if ev is not None:
                    yield ev

    def _pass_boundaries(self, t_ms: int) -> bool:
        """Advance the market through incident ends / starts at or before `t_ms`."""
        started = False
        while True:
            ends = [(i.end_s, i) for i in self.active]
            nxt_end = min(ends, key=lambda e: e[0]) if ends else None
            nxt_start = self._next.at_s if self._next is not None else math.inf
            b = min(nxt_end[0] if nxt_end else math.inf, nxt_start)
            if self.start_ms + b * 1000 > t_ms:
                return started
            self.market.advance(b, self._effects())
            self._fx = self._dfx = None  # the active set changes below
            if nxt_end and nxt_end[0] <= nxt_start:
                self.active.remove(nxt_end[1])
            else:
                if self._next is None:  # b is finite and no incident ends at b: one starts at b
                    raise SimulatorError("no incident starts at the next boundary")
                self._start(self._next)
                self._next = next(self._pending, None)
                started = True

    def _validate(self, inc: Incident) -> None:
        """Check an incident's parameters against this world (assets, chains, ...)."""
        p = {k: inc.param(k) for k in INCIDENT_DEFAULTS[inc.name][1]}
        strategies = {s.name for s in self.cfg.strategies}
        checks = {
            "asset": lambda v: self.cfg.asset_index(v) >= 0,
            "chain": lambda v: v == "all" or self.cfg.chain_index(v) >= 0,
            "source": lambda v: v in SOURCES,
            "strategy": lambda v: v == "all" or v in strategies,
            "portfolio": lambda v: v in {s.portfolio for s in self.cfg.strategies},
            "drop": lambda v: 0 < v < 1,
            "price_usd": lambda v: v > 0,
        }
        for key, ok in checks.items():
            if key in p and not ok(p[key]):
                raise SimulatorError(f"incident {inc.name}: bad {key} {p[key]!r}")
        for key in ("factor", "vol_mult", "size_mult", "depth_mult", "count", "oversized_bytes",
                    "target_usd"):
            if key in p and not p[key] > 0:
                raise SimulatorError(f"incident {inc.name}: {key} must be > 0")

    def _start(self, inc: Incident) -> None:
        self._validate(inc)
        self.active.append(inc)
        if inc.name != "bad-messages":
            return
        n = int(inc.param("count"))
        for k in range(n):
            ts = self.start_ms + int((inc.at_s + inc.duration_s * k / max(n, 1)) * 1000)
            ev = make_bad_message(BAD_KINDS[k % len(BAD_KINDS)], ts, k // len(BAD_KINDS),
                                  oversized_bytes=int(inc.param("oversized_bytes")))
            heapq.heappush(self._scheduled, (ts, next(self._tie), ev))

    # -- incident effects -----------------------------------------------------------------
    def _effects(self) -> Effects:
        """Market effects of the active incidents (constant between incident boundaries)."""
        if self._fx is None:
            self._fx = self._build_effects()
        return self._fx

    def _build_effects(self) -> Effects:
        fx = Effects()
        for inc in self.active:
            if inc.name == "flash-crash":
                self._crash_effects(inc, fx)
            elif inc.name == "stablecoin-depeg":
                fx.peg[self.cfg.asset_index(inc.param("asset"))] = float(inc.param("price_usd"))
            elif inc.name == "gas-spike":
                chain = inc.param("chain")
                for j, c in enumerate(self.cfg.chains):
                    if chain in ("all", c.name):
                        fx.gas_mult[j] = fx.gas_mult.get(j, 1.0) * float(inc.param("factor"))
        return fx

    def _crash_effects(self, inc: Incident, fx: Effects) -> None:
        ref = self.cfg.asset_index(inc.param("asset"))
        rate = math.log(1.0 - float(inc.param("drop"))) / inc.duration_s
        corr = np.asarray(self.cfg.correlation)[ref]
        sig = self.market.sigma
        for i, a in enumerate(self.cfg.assets):
            beta = 1.0 if i == ref else float(np.clip(corr[i] * sig[i] / sig[ref], 0.0, 1.5))
            if not a.stable and beta > 0:
                fx.drift_per_s[i] = fx.drift_per_s.get(i, 0.0) + beta * rate
        fx.vol_mult *= float(inc.param("vol_mult"))

    def _desk_effects(self) -> DeskEffects:
        if self._dfx is None:
            self._dfx = self._build_desk_effects()
        return self._dfx

    def _build_desk_effects(self) -> DeskEffects:
        dfx = DeskEffects()
        for inc in self.active:
            if inc.name == "revert-storm":
                dfx.revert_mult[inc.param("strategy")] = float(inc.param("factor"))
            elif inc.name == "concentration-build-up":
                dfx.buildup = Buildup(
                    inc.param("portfolio"), inc.param("asset"), float(inc.param("size_mult")),
                    float(inc.param("target_usd")), self.start_ms + int(inc.at_s * 1000),
                    self.start_ms + int(inc.end_s * 1000))
        return dfx

    def _stalled(self, source: str) -> bool:
        return any(i.name == "feed-stall" and i.param("source") == source for i in self.active)

    def _depth_mult(self, asset: int) -> float:
        m = 1.0
        for inc in self.active:
            crash = inc.name == "flash-crash" and not self.cfg.assets[asset].stable
            depeg = inc.name == "stablecoin-depeg" and inc.param("asset") == self.cfg.assets[asset].symbol
            if crash or depeg:
                m *= float(inc.param("depth_mult"))
        return m

    # -- event builders -------------------------------------------------------------------
    def _stats(self, t_ms: int, interval: int) -> Iterator[Event]:
        self.market.advance((t_ms - self.start_ms) / 1000, self._effects())
        dfx = self._desk_effects()
        for spec in self.cfg.strategies:
            yield Event(STATS, spec.name,
                        self.desk.stats_event(spec, t_ms, interval, self.market, dfx), t_ms)

    def _arrival(self, t_ms: int) -> Event | None:
        self.market.advance((t_ms - self.start_ms) / 1000, self._effects())
        u = float(self._rng.random())
        cat = _CATEGORIES[min(bisect.bisect_right(self._mix_cum, u), len(_CATEGORIES) - 1)]
        if cat == "position":
            v = self.desk.position_event(t_ms, self.market, self._desk_effects())
            return None if v is None else Event(POSITIONS, v["portfolio"], v, t_ms)
        if cat == "gas":
            j = int(self._rng.integers(len(self.cfg.chains)))
            return None if self._stalled("gas-tracker") else self._gas_tick(j, t_ms)
        i = int(self._rng.integers(len(self.cfg.assets)))
        if cat == "price":
            return None if self._stalled("price-oracle") else self._price_tick(i, t_ms)
        return None if self._stalled("liquidity-monitor") else self._liquidity_tick(i, t_ms)

    def _price_tick(self, i: int, t_ms: int) -> Event:
        sym = self.cfg.assets[i].symbol
        return Event(TICKS, sym, {"kind": "price", "source": "price-oracle", "ts_ms": t_ms,
                                  "asset": sym, "price_usd": round(self.market.price(i), 6)},
                     t_ms)

    def _gas_tick(self, j: int, t_ms: int) -> Event:
        name = self.cfg.chains[j].name
        return Event(TICKS, name, {
            "kind": "gas", "source": "gas-tracker", "ts_ms": t_ms, "chain": name,
            "base_fee_gwei": round(self.market.base_fee(j), 6),
            "priority_fee_gwei": round(self.market.priority_fee(j), 6)}, t_ms)

    def _liquidity_tick(self, i: int, t_ms: int) -> Event:
        a = self.cfg.assets[i]
        v = self.market.vol_ratio
        m = self._depth_mult(i)
        noise = self._rng.lognormal(0.0, 0.1, 3)
        depth = a.depth_usd * m / (1.0 + 0.2 * max(v - 1.0, 0.0)) * noise[0]
        spread = a.spread_bps * math.sqrt(max(v, 1.0) / m) * noise[1]
        return Event(TICKS, a.symbol, {
            "kind": "liquidity", "source": "liquidity-monitor", "ts_ms": t_ms,
            "asset": a.symbol, "pool": a.pool, "depth_usd": round(float(depth), 2),
            "spread_bps": round(float(spread), 4),
            "volume_usd": round(float(depth * 0.02 * noise[2]), 2)}, t_ms)

"""Market watch: the per-asset, per-chain, per-strategy and global figures the ``asset``,
``global`` and (``recent`` block of the) ``strategy`` rule scopes read.

A pure core, fed by the pipeline in event-time order: price, gas and liquidity ticks, the tick
anomaly scores the models computed for them, strategy stats, and the inputs rejected to
``risk.dlq``. It never reads a clock: every baseline decays in event time (half-lives in ms),
every window is ``(now - window_ms, now]`` of event time, so a replay yields the same figures.

Conventions: prices in USD, gas in gwei (base + priority fee), depth in USD; ``*_pct`` figures
are fractions (0.05 = 5 %); ``*_ratio`` figures are current / baseline (1.0 = normal).
Baselines are exponential moving averages weighted by event time: a new observation ``x`` at
``dt`` ms after the previous one moves the baseline ``b`` by ``(1 - 0.5 ** (dt / half_life)) *
(x - b)``; gas baselines average the log of the fee. Until a baseline has ``warmup`` observations
its ratio reads 1.0 (no opinion), so a cold start cannot alert.

Asset context (``asset`` scope, one per asset seen in a price or liquidity tick)::

    asset, price_usd, pegged (bool), peg_usd (0.0 when not pegged), depeg_pct,
    jump_pct = max(drop_pct, rise_pct) over the last jump_window_ms, drop_pct (from the
    window's high), rise_pct (from the window's low), depth_usd, depth_baseline_usd,
    depth_ratio, spread_bps, anomaly_score (highest tick anomaly score in the anomaly window),
    anomaly_flags (flagged warm ticks in that window), age_ms (since its last tick)

Global context (``global`` scope, entity ``market``)::

    assets, jump_pct_max / jump_asset, depeg_pct_max / depeg_asset, depth_ratio_min /
    depth_asset, anomaly_flags_max / anomaly_asset, gas_gwei_max / gas_gwei_chain, gas_ratio_max /
    gas_ratio_chain, gas_jump_max / gas_jump_chain, gas {chain: {gwei, baseline_gwei, ratio,
    jump}}, flags {high_volatility,
    high_correlation, low_liquidity, high_gas} and flag_count (the seed's market flags),
    dlq_recent (rejected inputs in the last dlq_window_ms), dlq_window_ms, dlq_total, plus
    whatever market figures the caller merges (the pipeline adds the risk core's volatility,
    correlation and liquidity_ratio)

Portfolio ``trend`` block (added to every risk snapshot, ``snapshot.trend``)::

    window_ms, net_growth_usd (largest growth of one unpegged asset's absolute net exposure since
    the oldest snapshot of the last trend_window_ms; negative when every one shrank),
    net_growth_asset, gross_growth_usd (change of gross exposure over the same span)

Strategy ``recent`` block (merged into the ``strategy`` scope context)::

    window_ms, intervals, bundles_submitted, bundles_reverted, revert_rate,
    baseline_revert_rate, revert_z (binomial z-score of the recent reverts against the baseline)

>>> w = MarketWatch(WatchConfig(pegs={"USDC": 1.0}))
>>> w.on_tick({"kind": "price", "asset": "USDC", "price_usd": 0.97, "ts_ms": 1_000})
>>> round(w.asset_context("USDC", 1_000)["depeg_pct"], 4)
0.03
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from agents.errors import MevRiskError

STATE_VERSION = 1


class WatchConfigError(MevRiskError):
    """``deploy/config/watch.yaml`` is malformed."""


@dataclass(frozen=True)
class WatchConfig:
    """Windows (ms of event time), baselines and declared pegs (USD) of the market watch."""

    pegs: Mapping[str, float] = field(default_factory=dict)
    jump_window_ms: int = 5_000
    depth_half_life_ms: int = 120_000
    gas_half_life_ms: int = 600_000
    warmup: int = 30
    anomaly_window_ms: int = 3_000
    revert_window_ms: int = 4_000
    revert_half_life_ms: int = 600_000
    dlq_window_ms: int = 10_000
    trend_window_ms: int = 5_000
    flag_volatility: float = 0.05
    flag_correlation: float = 0.8
    flag_liquidity_ratio: float = 0.5
    flag_gas_gwei: float = 100.0
    """The seed's market condition flags: volatility above 5 %, correlation above 0.8, liquidity
    ratio below 0.5, gas above 100 gwei (``system.flags``, ``system.flag_count``)."""

    def __post_init__(self) -> None:
        for name in ("jump_window_ms", "depth_half_life_ms", "gas_half_life_ms", "anomaly_window_ms",
                     "revert_window_ms", "revert_half_life_ms", "dlq_window_ms", "trend_window_ms"):
            if int(getattr(self, name)) <= 0:
                raise WatchConfigError(f"watch config: {name} must be > 0")
        for asset, peg in self.pegs.items():
            if not (isinstance(peg, int | float) and math.isfinite(peg) and peg > 0):
                raise WatchConfigError(f"watch config: peg of {asset!r} must be a positive number")


def load_watch_config(path: str | Path) -> WatchConfig:
    """Parse a watch config file (missing file: defaults, no pegs)."""
    p = Path(path)
    if not p.exists():
        return WatchConfig()
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise WatchConfigError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise WatchConfigError(f"{p}: expected a mapping")
    known = {f for f in WatchConfig.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise WatchConfigError(f"{p}: unknown keys {unknown}")
    pegs = raw.pop("pegs", None) or {}
    if not isinstance(pegs, dict):
        raise WatchConfigError(f"{p}: 'pegs' must map asset to USD price")
    try:
        typed: dict[str, Any] = {k: (float(v) if k.startswith("flag_") else int(v)) for k, v in raw.items()}
    except (TypeError, ValueError) as e:
        raise WatchConfigError(f"{p}: {e}") from None
    return WatchConfig(pegs={str(k): float(v) for k, v in pegs.items()}, **typed)


def _figure(table: Mapping[str, Mapping[str, Any]], key: str, name: str) -> float:
    """``table[name][key]`` as a float (a sort key over the names of ``table``)."""
    return float(table[name][key])


def mean_correlation(cov: Any, names: list[str], exclude: Mapping[str, Any]) -> float:
    """Mean pairwise correlation of a covariance matrix (rows named by ``names``), leaving out
    the assets in ``exclude`` (the pegged ones) and those without variance; 0.0 under two assets.

    >>> import numpy as np
    >>> round(mean_correlation(np.array([[1.0, 0.9], [0.9, 1.0]]), ["A", "B"], {}), 3)
    0.9
    """
    import numpy as np

    keep = [i for i, n in enumerate(names[: len(cov)]) if n not in exclude and cov[i][i] > 0]
    if len(keep) < 2:
        return 0.0
    sub = np.asarray(cov, dtype=float)[np.ix_(keep, keep)]
    sd = np.sqrt(np.diag(sub))
    corr = sub / np.outer(sd, sd)
    k = len(keep)
    value = (float(corr.sum()) - k) / (k * (k - 1))
    return value if math.isfinite(value) else 0.0


def _decay(dt_ms: float, half_life_ms: float) -> float:
    """Weight of a new observation ``dt_ms`` after the previous one."""
    return 1.0 - 0.5 ** (max(dt_ms, 0.0) / half_life_ms)


class _Baseline:
    """Event-time EWMA of one series (see the module docstring)."""

    __slots__ = ("last_ts", "n", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self.last_ts = 0
        self.n = 0

    def add(self, x: float, ts_ms: int, half_life_ms: int) -> None:
        if self.value is None:
            self.value = x
        else:
            w = max(_decay(ts_ms - self.last_ts, half_life_ms), 1.0 / (self.n + 1))
            self.value += w * (x - self.value)
        self.last_ts = max(self.last_ts, ts_ms)
        self.n += 1

    def to_list(self) -> list[Any]:
        return [self.value, self.last_ts, self.n]

    @classmethod
    def from_list(cls, d: list[Any]) -> _Baseline:
        b = cls()
        b.value = None if d[0] is None else float(d[0])
        b.last_ts, b.n = int(d[1]), int(d[2])
        return b


class _Asset:
    __slots__ = ("anomaly", "depth", "depth_base", "last_ts", "prices", "spread")

    def __init__(self) -> None:
        self.prices: deque[tuple[int, float]] = deque()
        self.depth: dict[str, tuple[float, float]] = {}  # pool -> (depth_usd, spread_bps)
        self.depth_base = _Baseline()
        self.spread = 0.0
        self.anomaly: deque[tuple[int, float, bool]] = deque()
        self.last_ts = 0


class _Chain:
    __slots__ = ("base", "gwei", "recent")

    def __init__(self) -> None:
        self.gwei = 0.0
        self.base = _Baseline()  # of ln(gwei)
        self.recent: deque[tuple[int, float]] = deque()  # (ts_ms, gwei) over jump_window_ms


class _Strategy:
    __slots__ = ("p0", "recent")

    def __init__(self) -> None:
        self.recent: deque[tuple[int, int, int]] = deque()  # (ts_ms, submitted, reverted)
        self.p0 = _Baseline()  # revert rate per interval, weighted by event time


class MarketWatch:
    """Keeps the figures of the module docstring; ``*_context`` read them at event time ``now_ms``."""

    def __init__(self, config: WatchConfig | None = None) -> None:
        self.config = config or WatchConfig()
        self._assets: dict[str, _Asset] = {}
        self._chains: dict[str, _Chain] = {}
        self._strategies: dict[str, _Strategy] = {}
        """Checkpointed with each strategy's partition (:meth:`strategy_state`), like portfolios."""
        self._dlq: deque[int] = deque()
        self.dlq_total = 0
        self._portfolios: dict[str, deque[tuple[int, float, dict[str, float]]]] = {}
        """Portfolio -> (ts_ms, gross USD, net USD by asset) of its snapshots in the trend window;
        checkpointed with the portfolio's partition (:meth:`portfolio_state`), not the market."""

    # ---- inputs --------------------------------------------------------------
    def on_tick(self, tick: Mapping[str, Any], score: float | None = None,
                flagged: bool = False) -> None:
        """Apply a validated ``mev.market.ticks`` value and, if the models scored it, its anomaly
        score (``flagged``: a warm tick at or over the detector's threshold)."""
        kind, ts = tick.get("kind"), int(tick["ts_ms"])
        if kind == "gas":
            self._on_gas(str(tick["chain"]), ts,
                         float(tick.get("base_fee_gwei", 0.0)) + float(tick.get("priority_fee_gwei", 0.0)))
            return
        name = tick.get("asset")
        if not isinstance(name, str):
            return
        a = self._assets.get(name)
        if a is None:
            a = self._assets[name] = _Asset()
        a.last_ts = max(a.last_ts, ts)
        if kind == "price":
            price = float(tick["price_usd"])
            if price > 0 and math.isfinite(price):
                a.prices.append((ts, price))
                self._trim(a.prices, ts - self.config.jump_window_ms, keep_one=True)
        elif kind == "liquidity":
            a.depth[str(tick.get("pool", ""))] = (float(tick.get("depth_usd", 0.0)),
                                                  float(tick.get("spread_bps", 0.0)))
            depth = sum(d for d, _ in a.depth.values())
            a.spread = (sum(d * s for d, s in a.depth.values()) / depth) if depth > 0 else 0.0
            a.depth_base.add(depth, ts, self.config.depth_half_life_ms)
        if score is not None:
            a.anomaly.append((ts, float(score), bool(flagged)))
            self._trim(a.anomaly, ts - self.config.anomaly_window_ms)

    def _on_gas(self, chain: str, ts: int, gwei: float) -> None:
        c = self._chains.get(chain)
        if c is None:
            c = self._chains[chain] = _Chain()
        if gwei > 0 and math.isfinite(gwei):
            c.gwei = gwei
            c.recent.append((ts, gwei))
            self._trim(c.recent, ts - self.config.jump_window_ms, keep_one=True)
            # after the warm-up a tick moves the baseline by ~dt/half-life: a spike barely shifts it
            c.base.add(math.log(gwei), ts, self.config.gas_half_life_ms)

    def on_stats(self, stats: Mapping[str, Any]) -> None:
        """Apply a validated ``mev.strategy.stats`` value (bundle counts of one interval)."""
        s = self._strategies.get(str(stats["strategy"]))
        if s is None:
            s = self._strategies[str(stats["strategy"])] = _Strategy()
        ts = int(stats["ts_ms"])
        sub, rev = int(stats.get("bundles_submitted", 0)), int(stats.get("bundles_reverted", 0))
        s.recent.append((ts, sub, rev))
        self._trim(s.recent, ts - self.config.revert_window_ms)
        # a storm must not teach the baseline: intervals while the recent reverts stand out
        # (z > 3 against a warm baseline) are not learned, as flagged ticks are not
        if sub > 0 and self.strategy_recent(str(stats["strategy"]), ts + 1)["revert_z"] <= 3.0:
            s.p0.add(rev / sub, ts, self.config.revert_half_life_ms)

    def on_snapshot(self, portfolio: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """Record a risk snapshot; returns its ``trend`` block (see the module docstring)."""
        ts = int(snapshot["ts_ms"])
        net = {str(k): float(v) for k, v in (snapshot.get("exposure_by_asset") or {}).items()}
        gross = float(snapshot.get("total_exposure_usd") or 0.0)
        q = self._portfolios.setdefault(portfolio, deque())
        q.append((ts, gross, net))
        self._trim(q, ts - self.config.trend_window_ms, keep_one=True)
        _, gross0, net0 = q[0]
        growth = {a: abs(net.get(a, 0.0)) - abs(net0.get(a, 0.0)) for a in sorted(set(net) | set(net0))
                  if a not in self.config.pegs}  # stablecoin legs hedge: they are not a build-up
        asset = max(growth, key=lambda a: growth[a], default="")
        return {"window_ms": float(self.config.trend_window_ms),
                "net_growth_usd": growth.get(asset, 0.0), "net_growth_asset": asset,
                "gross_growth_usd": gross - gross0}

    def portfolio_state(self, portfolio: str) -> list[Any] | None:
        """JSON-able trend state of one portfolio (None when it has none)."""
        q = self._portfolios.get(portfolio)
        return None if q is None else [[ts, g, dict(sorted(n.items()))] for ts, g, n in q]

    def install_portfolio(self, portfolio: str, state: list[Any]) -> None:
        """Restore :meth:`portfolio_state` (raises ValueError/TypeError when malformed)."""
        self._portfolios[portfolio] = deque(
            (int(ts), float(g), {str(k): float(v) for k, v in n.items()}) for ts, g, n in state)

    def strategy_state(self, strategy: str) -> dict[str, Any] | None:
        """JSON-able revert state of one strategy (checkpointed with the strategy's partition)."""
        s = self._strategies.get(strategy)
        return None if s is None else {"recent": [list(r) for r in s.recent], "p0": s.p0.to_list()}

    def install_strategy(self, strategy: str, state: Mapping[str, Any]) -> None:
        """Restore :meth:`strategy_state` (raises ValueError/TypeError/KeyError when malformed)."""
        s = self._strategies[strategy] = _Strategy()
        s.recent = deque((int(t), int(a), int(b)) for t, a, b in state["recent"])
        s.p0 = _Baseline.from_list(state["p0"])

    def on_rejected(self, ts_ms: int) -> None:
        """One input rejected to ``risk.dlq`` at event time ``ts_ms``."""
        self.dlq_total += 1
        self._dlq.append(int(ts_ms))

    @staticmethod
    def _trim(q: deque[Any], cutoff: int, keep_one: bool = False) -> None:
        while q and q[0][0] <= cutoff and (not keep_one or len(q) > 1):
            q.popleft()

    # ---- contexts ------------------------------------------------------------
    @property
    def assets(self) -> list[str]:
        return sorted(self._assets)

    def asset_context(self, name: str, now_ms: int) -> dict[str, Any]:
        """Figures of one asset at ``now_ms`` (see the module docstring)."""
        cfg, a = self.config, self._assets[name]
        cutoff = now_ms - cfg.jump_window_ms
        window = [p for ts, p in a.prices if ts > cutoff] or [p for _, p in list(a.prices)[-1:]]
        price = a.prices[-1][1] if a.prices else 0.0
        drop = 1.0 - price / max(window) if window else 0.0
        rise = price / min(window) - 1.0 if window else 0.0
        peg = float(cfg.pegs.get(name, 0.0))
        depth = sum(d for d, _ in a.depth.values())
        base = a.depth_base.value or 0.0
        ratio = depth / base if a.depth_base.n >= cfg.warmup and base > 0 else 1.0
        scores = [(s, f) for ts, s, f in a.anomaly if ts > now_ms - cfg.anomaly_window_ms]
        return {
            "asset": name, "price_usd": price, "pegged": peg > 0, "peg_usd": peg,
            "depeg_pct": abs(price / peg - 1.0) if peg > 0 and price > 0 else 0.0,
            "jump_pct": max(drop, rise), "drop_pct": drop, "rise_pct": rise,
            "depth_usd": depth, "depth_baseline_usd": base, "depth_ratio": ratio,
            "spread_bps": a.spread,
            "anomaly_score": max((s for s, _ in scores), default=0.0),
            "anomaly_flags": sum(1 for _, f in scores if f),
            "age_ms": max(0, now_ms - a.last_ts),
        }

    def gas(self, now_ms: int | None = None) -> dict[str, dict[str, float]]:
        """``{chain: {gwei, baseline_gwei, ratio, jump}}``: ``ratio`` against the slow baseline
        (1.0 until it is warm), ``jump`` = gwei / the lowest gwei of the last jump_window_ms
        (a sudden multiple; 1.0 until the baseline is warm)."""
        out = {}
        for chain in sorted(self._chains):
            c = self._chains[chain]
            base = math.exp(c.base.value) if c.base.value is not None else 0.0
            warm = c.base.n >= self.config.warmup and base > 0
            cutoff = (now_ms if now_ms is not None else c.base.last_ts) - self.config.jump_window_ms
            low = min((g for ts, g in c.recent if ts > cutoff), default=c.gwei)
            out[chain] = {"gwei": c.gwei, "baseline_gwei": base,
                          "ratio": c.gwei / base if warm else 1.0,
                          "jump": c.gwei / low if warm and low > 0 else 1.0}
        return out

    def global_context(self, now_ms: int, assets: Mapping[str, Mapping[str, Any]] | None = None,
                       market: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Market-wide figures at ``now_ms``; ``assets``: the asset contexts already built for
        ``now_ms`` (computed when not given); ``market``: extra figures merged in."""
        if assets is None:
            assets = {n: self.asset_context(n, now_ms) for n in self.assets}
        gas = self.gas(now_ms)
        self._trim_dlq(now_ms)
        ctx: dict[str, Any] = {"assets": float(len(assets)), "gas": gas,
                               "dlq_recent": float(len(self._dlq)),
                               "dlq_window_ms": float(self.config.dlq_window_ms),
                               "dlq_total": float(self.dlq_total)}
        for out, key, pick in (("jump", "jump_pct", max), ("depeg", "depeg_pct", max),
                               ("depth", "depth_ratio", min), ("anomaly", "anomaly_flags", max)):
            best = pick(sorted(assets), key=partial(_figure, assets, key), default=None)
            suffix = {"jump": "_pct_max", "depeg": "_pct_max", "depth": "_ratio_min",
                      "anomaly": "_flags_max"}[out]
            ctx[out + suffix] = float(assets[best][key]) if best is not None else (
                1.0 if out == "depth" else 0.0)
            ctx[out + "_asset"] = best or ""
        for out, key in (("gas_gwei", "gwei"), ("gas_ratio", "ratio"), ("gas_jump", "jump")):
            best = max(sorted(gas), key=partial(_figure, gas, key), default=None)
            ctx[out + "_max"] = gas[best][key] if best is not None else 0.0
            ctx[out + "_chain"] = best or ""
        if market:
            ctx.update(market)
        cfg = self.config
        flags = {"high_volatility": float(ctx.get("volatility", 0.0)) > cfg.flag_volatility,
                 "high_correlation": float(ctx.get("correlation", 0.0)) > cfg.flag_correlation,
                 "low_liquidity": float(ctx.get("liquidity_ratio", 1.0)) < cfg.flag_liquidity_ratio,
                 "high_gas": float(ctx["gas_gwei_max"]) > cfg.flag_gas_gwei}
        ctx["flags"] = flags
        ctx["flag_count"] = float(sum(flags.values()))
        return ctx

    def _trim_dlq(self, now_ms: int) -> None:
        cutoff = now_ms - self.config.dlq_window_ms
        while self._dlq and self._dlq[0] <= cutoff:
            self._dlq.popleft()

    def strategy_recent(self, name: str, now_ms: int) -> dict[str, Any]:
        """The ``recent`` block of a strategy at ``now_ms`` (see the module docstring)."""
        cfg = self.config
        s = self._strategies.get(name)
        rows = [r for r in (s.recent if s else ()) if r[0] > now_ms - cfg.revert_window_ms]
        sub = sum(r[1] for r in rows)
        rev = sum(r[2] for r in rows)
        p0 = s.p0.value if s is not None and s.p0.value is not None and s.p0.n >= cfg.warmup else None
        z = 0.0
        if p0 is not None and sub > 0:
            p = min(max(p0, 0.01), 0.99)  # floor: a strategy that never reverts is not infinitely sure
            z = (rev - sub * p) / math.sqrt(sub * p * (1.0 - p))
        return {"window_ms": float(cfg.revert_window_ms), "intervals": float(len(rows)),
                "bundles_submitted": float(sub), "bundles_reverted": float(rev),
                "revert_rate": rev / sub if sub else 0.0,
                "baseline_revert_rate": p0 if p0 is not None else 0.0, "revert_z": z}

    # ---- persistence (checkpoints are data, never code) ------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (the config is not included: it comes from the configuration)."""
        return {
            "version": STATE_VERSION,
            "assets": {n: {"prices": [list(p) for p in a.prices],
                           # in the order the pools were first seen: depth and spread are float
                           # sums over them, bit-identical after a restore only in that order
                           "depth": [[k, *v] for k, v in a.depth.items()],
                           "depth_base": a.depth_base.to_list(), "spread": a.spread,
                           "anomaly": [list(x) for x in a.anomaly], "last_ts": a.last_ts}
                       for n, a in sorted(self._assets.items())},
            "chains": {n: {"gwei": c.gwei, "base": c.base.to_list(), "recent": [list(r) for r in c.recent]}
                       for n, c in sorted(self._chains.items())},
            "dlq": list(self._dlq), "dlq_total": self.dlq_total,
        }

    @classmethod
    def from_dict(cls, config: WatchConfig, d: Mapping[str, Any]) -> MarketWatch:
        """Rebuild from :meth:`to_dict` (raises ValueError/KeyError/TypeError when malformed)."""
        if int(d["version"]) != STATE_VERSION:
            raise ValueError(f"market watch state version {d['version']!r}")
        w = cls(config)
        for n, x in d["assets"].items():
            a = w._assets[str(n)] = _Asset()
            a.prices = deque((int(t), float(p)) for t, p in x["prices"])
            pools = x["depth"].items() if isinstance(x["depth"], dict) else (  # dict: an older state
                (row[0], row[1:]) for row in x["depth"])
            a.depth = {str(k): (float(v[0]), float(v[1])) for k, v in pools}
            a.depth_base = _Baseline.from_list(x["depth_base"])
            a.spread, a.last_ts = float(x["spread"]), int(x["last_ts"])
            a.anomaly = deque((int(t), float(s), bool(f)) for t, s, f in x["anomaly"])
        for n, x in d["chains"].items():
            c = w._chains[str(n)] = _Chain()
            c.gwei, c.base = float(x["gwei"]), _Baseline.from_list(x["base"])
            c.recent = deque((int(t), float(g)) for t, g in x["recent"])
        w._dlq = deque(int(t) for t in d["dlq"])
        w.dlq_total = int(d["dlq_total"])
        return w

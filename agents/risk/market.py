"""Market state other than prices: gas per chain and liquidity per asset/pool.

* Gas: base + priority fee (gwei) per chain, kept for ``window_ms`` of event
  time before the newest gas tick of that chain; mean, p95 and max. The p95 uses
  the nearest-rank rule: sorted ascending, element ``ceil(0.95 * n)``; the mean
  is the correctly rounded mean. Both are kept incrementally
  (:mod:`agents.risk.rolling`), so reading them does not scan the window.
* Liquidity: the latest ``depth_usd``/``spread_bps`` per (asset, pool) by event
  time. Per asset, depth is the sum over pools and spread the depth-weighted
  mean. ``liquidity_ratio`` = total latest depth / total EWMA depth (1.0 when
  nothing is known; 0.5 means depth halved against its recent average).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agents.risk.errors import RiskInputError
from agents.risk.rolling import TimeWindowSample, nearest_rank_index


def nearest_rank(values: list[float] | np.ndarray, q: float) -> float:
    """Nearest-rank quantile: sorted ascending, element ``ceil(q * n)`` (1-based)."""
    arr = np.sort(np.asarray(values, dtype=float))
    if arr.size == 0:
        return float("nan")
    return float(arr[nearest_rank_index(arr.size, q) - 1])


class GasState:
    """Windowed gas statistics per chain (event time), kept incrementally: a snapshot's
    :meth:`stats` costs O(chains), not O(window)."""

    def __init__(self, window_ms: int = 300_000) -> None:
        self.window_ms = window_ms
        self._windows: dict[str, TimeWindowSample] = {}
        self._newest: dict[str, int] = {}
        self._stats: dict[str, dict[str, float]] | None = None  # until the next add or restore

    def add(self, chain: str, ts_ms: int, gwei: float) -> None:
        """Record one gas observation (base + priority fee, gwei; finite)."""
        self._stats = None
        newest = max(ts_ms, self._newest.get(chain, ts_ms))
        self._newest[chain] = newest
        cutoff = newest - self.window_ms
        if ts_ms <= cutoff:
            return  # already outside the window
        window = self._windows.get(chain)
        if window is None:
            window = self._windows[chain] = TimeWindowSample()
        window.add(ts_ms, gwei)
        window.expire(cutoff)

    def stats(self) -> dict[str, dict[str, float]]:
        """``{chain: {mean, p95, max, n}}`` in gwei, sorted by chain (fresh dicts; the figures are
        kept from one gas tick to the next)."""
        if self._stats is None:
            self._stats = {chain: {"mean": w.mean(), "p95": w.quantile(0.95), "max": w.max(),
                                   "n": float(w.count)}
                           for chain, w in sorted(self._windows.items()) if w.count}
        return {chain: dict(figures) for chain, figures in self._stats.items()}

    def observations(self) -> dict[str, list[tuple[int, float]]]:
        """``{chain: [(ts_ms, gwei), ...]}`` inside each chain's window (for checkpoints)."""
        return {chain: w.observations() for chain, w in self._windows.items()}

    def newest(self) -> dict[str, int]:
        """Newest gas tick time per chain (ms; for checkpoints)."""
        return dict(self._newest)

    def restore(self, observations: dict[str, list[tuple[int, float]]],
                newest: dict[str, int]) -> None:
        """Replace the state with checkpointed observations and newest tick times; observations
        outside their chain's window (older blobs kept some) are dropped."""
        self._stats = None
        self._newest = {str(chain): int(ts) for chain, ts in newest.items()}
        self._windows = {}
        for chain, obs in observations.items():
            chain = str(chain)
            if obs and chain not in self._newest:
                self._newest[chain] = max(int(ts) for ts, _ in obs)
            cutoff = self._newest.get(chain, 0) - self.window_ms
            self._windows[chain] = TimeWindowSample((ts, v) for ts, v in obs if ts > cutoff)


class LiquidityState:
    """Latest depth and spread per (asset, pool)."""

    def __init__(self, ewma_alpha: float = 0.05) -> None:
        self.alpha = ewma_alpha
        self._latest: dict[tuple[str, str], tuple[int, float, float]] = {}
        self._depth_ewma: dict[tuple[str, str], float] = {}
        self._version = 0  # bumped by every applied tick; with the two maps, the key of _memo
        self._memo: tuple[Any, Any, int, dict[str, tuple[float, float]], float] | None = None

    def add(self, rec: dict[str, Any]) -> None:
        """Apply a liquidity tick (older than the stored one for its pool: ignored)."""
        key = (str(rec["asset"]), str(rec.get("pool", "")))
        ts = int(rec["ts_ms"])
        depth, spread = float(rec.get("depth_usd", 0.0)), float(rec.get("spread_bps", 0.0))
        if not (depth >= 0 and spread >= 0 and math.isfinite(depth) and math.isfinite(spread)):
            raise RiskInputError(f"liquidity tick {key}: depth_usd and spread_bps must be >= 0")
        prev = self._latest.get(key)
        if prev is not None and ts < prev[0]:
            return
        self._latest[key] = (ts, depth, spread)
        self._version += 1
        old = self._depth_ewma.get(key)
        self._depth_ewma[key] = depth if old is None else old + self.alpha * (depth - old)

    def _figures(self) -> tuple[dict[str, tuple[float, float]], float]:
        """:meth:`per_asset` and :meth:`liquidity_ratio`, computed once per applied tick (a
        restore replaces the maps, which also invalidates them)."""
        memo = self._memo
        if memo is None or memo[0] is not self._latest or memo[1] is not self._depth_ewma \
                or memo[2] != self._version:
            memo = self._memo = (self._latest, self._depth_ewma, self._version,
                                 self._per_asset(), self._ratio())
        return memo[3], memo[4]

    def figures(self) -> dict[str, tuple[float, float]]:
        """:meth:`per_asset` without the copy: the same read-only mapping until the next applied
        tick (callers may key a cache on its identity)."""
        return self._figures()[0]

    def per_asset(self) -> dict[str, tuple[float, float]]:
        """``{asset: (depth_usd, spread_bps)}`` aggregated over pools."""
        return dict(self._figures()[0])

    def liquidity_ratio(self) -> float:
        """Total latest depth / total EWMA depth (1.0 when unknown)."""
        return self._figures()[1]

    def _per_asset(self) -> dict[str, tuple[float, float]]:
        acc: dict[str, list[float]] = {}
        for (asset, _pool), (_ts, depth, spread) in sorted(self._latest.items()):
            a = acc.setdefault(asset, [0.0, 0.0, 0.0, 0.0])
            a[0] += depth
            a[1] += depth * spread
            a[2] += spread
            a[3] += 1
        return {asset: (d, ws / d if d > 0 else s / n) for asset, (d, ws, s, n) in acc.items()}

    def _ratio(self) -> float:
        ref = sum(self._depth_ewma.values())
        if ref <= 0:
            return 1.0
        return sum(v[1] for v in self._latest.values()) / ref

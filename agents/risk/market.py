"""Market state other than prices: gas per chain and liquidity per asset/pool.

* Gas: base + priority fee (gwei) per chain, kept for ``window_ms`` of event
  time before the newest gas tick of that chain; mean, p95 and max. The p95 uses
  the nearest-rank rule: sorted ascending, element ``ceil(0.95 * n)``.
* Liquidity: the latest ``depth_usd``/``spread_bps`` per (asset, pool) by event
  time. Per asset, depth is the sum over pools and spread the depth-weighted
  mean. ``liquidity_ratio`` = total latest depth / total EWMA depth (1.0 when
  nothing is known; 0.5 means depth halved against its recent average).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from agents.risk.errors import RiskInputError


def nearest_rank(values: list[float] | np.ndarray, q: float) -> float:
    """Nearest-rank quantile: sorted ascending, element ``ceil(q * n)`` (1-based)."""
    arr = np.sort(np.asarray(values, dtype=float))
    if arr.size == 0:
        return float("nan")
    k = min(arr.size, max(1, math.ceil(round(q * arr.size, 9))))
    return float(arr[k - 1])


class GasState:
    """Windowed gas statistics per chain (event time)."""

    def __init__(self, window_ms: int = 300_000) -> None:
        self.window_ms = window_ms
        self._obs: dict[str, deque[tuple[int, float]]] = {}
        self._newest: dict[str, int] = {}

    def add(self, chain: str, ts_ms: int, gwei: float) -> None:
        """Record one gas observation (base + priority fee, gwei)."""
        newest = max(ts_ms, self._newest.get(chain, ts_ms))
        self._newest[chain] = newest
        if ts_ms <= newest - self.window_ms:
            return  # already outside the window
        q = self._obs.setdefault(chain, deque())
        q.append((ts_ms, gwei))
        while q and q[0][0] <= newest - self.window_ms:
            q.popleft()

    def stats(self) -> dict[str, dict[str, float]]:
        """``{chain: {mean, p95, max, n}}`` in gwei, sorted by chain."""
        out: dict[str, dict[str, float]] = {}
        for chain in sorted(self._obs):
            cutoff = self._newest[chain] - self.window_ms
            vals = [v for ts, v in self._obs[chain] if ts > cutoff]
            if vals:
                out[chain] = {"mean": float(np.mean(vals)), "p95": nearest_rank(vals, 0.95),
                              "max": float(max(vals)), "n": float(len(vals))}
        return out


class LiquidityState:
    """Latest depth and spread per (asset, pool)."""

    def __init__(self, ewma_alpha: float = 0.05) -> None:
        self.alpha = ewma_alpha
        self._latest: dict[tuple[str, str], tuple[int, float, float]] = {}
        self._depth_ewma: dict[tuple[str, str], float] = {}

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
        old = self._depth_ewma.get(key)
        self._depth_ewma[key] = depth if old is None else old + self.alpha * (depth - old)

    def per_asset(self) -> dict[str, tuple[float, float]]:
        """``{asset: (depth_usd, spread_bps)}`` aggregated over pools."""
        acc: dict[str, list[float]] = {}
        for (asset, _pool), (_ts, depth, spread) in sorted(self._latest.items()):
            a = acc.setdefault(asset, [0.0, 0.0, 0.0, 0.0])
            a[0] += depth
            a[1] += depth * spread
            a[2] += spread
            a[3] += 1
        return {asset: (d, ws / d if d > 0 else s / n) for asset, (d, ws, s, n) in acc.items()}

    def liquidity_ratio(self) -> float:
        """Total latest depth / total EWMA depth (1.0 when unknown)."""
        ref = sum(self._depth_ewma.values())
        if ref <= 0:
            return 1.0
        return sum(v[1] for v in self._latest.values()) / ref

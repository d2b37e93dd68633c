"""Event-time bars and the aligned log-return window.

Conventions
-----------
* A bar covers ``[start_ms, start_ms + bar_ms)``; its close is the price of the
  tick with the largest ``ts_ms`` inside it (ties: the last one received).
* Bars close on event time only: :meth:`BarResampler.advance` closes every bar
  whose end is ``<= watermark_ms``. A tick whose bar is already closed is *late*:
  it is counted in ``late_ticks`` and not applied.
* Returns are log returns ``ln(close_t / close_{t-1})``. An asset without a new
  price in a bar (or seen for the first time) gets return 0 for that bar, so
  rows stay aligned across assets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agents.risk.errors import RiskInputError


class AssetIndex:
    """Stable ``asset -> column`` mapping shared by the market state and books."""

    def __init__(self) -> None:
        self._idx: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, asset: object) -> bool:
        return asset in self._idx

    def get(self, asset: str) -> int | None:
        """Column of ``asset`` or None when never seen."""
        return self._idx.get(asset)

    def intern(self, asset: str) -> int:
        """Column of ``asset``, allocating the next one on first sight."""
        idx = self._idx.get(asset)
        if idx is None:
            idx = len(self.names)
            self._idx[asset] = idx
            self.names.append(asset)
        return idx


@dataclass(frozen=True)
class Bar:
    """A closed bar: ``closes`` holds the latest close of every known asset
    (carried forward), ``updated`` the assets that ticked inside this bar."""

    start_ms: int
    end_ms: int
    closes: dict[str, float]
    updated: frozenset[str]
    returns: dict[str, float] = field(default_factory=dict)


class BarResampler:
    """Resample price ticks into event-time bars of ``bar_ms`` per asset."""

    def __init__(self, bar_ms: int, max_empty_bars: int = 500) -> None:
        if bar_ms <= 0:
            raise RiskInputError(f"bar_ms must be > 0, got {bar_ms}")
        self.bar_ms = int(bar_ms)
        self.max_empty_bars = int(max_empty_bars)
        self._open: dict[int, dict[str, tuple[int, float]]] = {}
        self._closed_until_ms: int | None = None  # end of the last closed bar
        self.last_close: dict[str, float] = {}
        self.late_ticks = 0
        self.applied_ticks = 0

    def bar_start(self, ts_ms: int) -> int:
        """Start of the bar containing ``ts_ms``."""
        return (int(ts_ms) // self.bar_ms) * self.bar_ms

    def add(self, asset: str, ts_ms: int, price_usd: float) -> bool:
        """Record a price tick; returns False (and counts it) when the tick is late."""
        if not (price_usd > 0.0 and math.isfinite(price_usd)):
            raise RiskInputError(f"price_usd must be a finite number > 0, got {price_usd!r}")
        start = self.bar_start(ts_ms)
        if self._closed_until_ms is not None and start < self._closed_until_ms:
            self.late_ticks += 1
            return False
        bucket = self._open.setdefault(start, {})
        prev = bucket.get(asset)
        if prev is None or ts_ms >= prev[0]:
            bucket[asset] = (int(ts_ms), float(price_usd))
        self.applied_ticks += 1
        return True

    def advance(self, watermark_ms: int) -> list[Bar]:
        """Close every bar ending at or before ``watermark_ms``; return them in order.

        Empty bars between ticks are emitted too (all returns 0), but at most
        ``max_empty_bars`` in a row: a longer idle gap only shifts the window.
        """
        if not self._open and self._closed_until_ms is None:
            return []
        next_start = (self._closed_until_ms if self._closed_until_ms is not None
                      else min(self._open))
        last_end = self.bar_start(watermark_ms)  # bars starting before this are closed
        bars: list[Bar] = []
        empty_run = 0
        while next_start < last_end:
            bucket = self._open.pop(next_start, None)
            if bucket is not None:
                empty_run = 0
                bars.append(self._close(next_start, bucket))
            elif empty_run < self.max_empty_bars:
                empty_run += 1
                bars.append(self._close(next_start, {}))
            else:  # long idle gap: jump to the next bar holding ticks
                pending = [s for s in self._open if s < last_end]
                next_start = min(pending) if pending else last_end
                continue
            next_start += self.bar_ms
        self._closed_until_ms = max(next_start, self._closed_until_ms or next_start)
        return bars

    def _close(self, start: int, bucket: dict[str, tuple[int, float]]) -> Bar:
        returns: dict[str, float] = {}
        for asset in sorted(bucket):
            price = bucket[asset][1]
            prev = self.last_close.get(asset)
            returns[asset] = _log_return(price, prev) if prev is not None else 0.0
            self.last_close[asset] = price
        return Bar(start, start + self.bar_ms, dict(self.last_close),
                   frozenset(bucket), returns)


class ReturnsWindow:
    """Ring buffer of the last ``capacity`` bars of log returns, one column per asset.

    ``expm1`` rows (``exp(r) - 1``, the simple return used by scenario P&L) are
    stored next to the log returns so a recompute never re-exponentiates.
    Row order inside the buffer is irrelevant to VaR (a permutation of
    scenarios); :meth:`chronological` gives time order when needed.
    """

    def __init__(self, assets: AssetIndex, capacity: int = 500) -> None:
        if capacity < 1:
            raise RiskInputError("returns window capacity must be >= 1")
        self.assets = assets
        self.capacity = int(capacity)
        self._cols = 8
        self.log_r = np.zeros((self.capacity, self._cols))
        self.simple_r = np.zeros((self.capacity, self._cols))
        self.count = 0
        self._next = 0
        self.bars_seen = 0

    def _ensure_cols(self, n: int) -> None:
        if n <= self._cols:
            return
        cols = max(n, 2 * self._cols)
        for name in ("log_r", "simple_r"):
            old = getattr(self, name)
            new = np.zeros((self.capacity, cols))
            new[:, : old.shape[1]] = old
            setattr(self, name, new)
        self._cols = cols

    def append(self, returns: dict[str, float]) -> np.ndarray:
        """Append one bar of log returns (missing assets = 0); return the row (n_assets,)."""
        for asset in returns:
            self.assets.intern(asset)
        n = len(self.assets)
        self._ensure_cols(n)
        row = np.zeros(self._cols)
        for asset, r in returns.items():
            row[self.assets.intern(asset)] = r
        self.log_r[self._next] = row
        self.simple_r[self._next] = np.expm1(row)
        self._next = (self._next + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.bars_seen += 1
        return row[:n]

    def scenarios(self, n_assets: int | None = None) -> np.ndarray:
        """Simple returns ``exp(r) - 1`` of the stored bars, shape (count, n_assets).

        A view, in buffer order (not time order); do not mutate.
        """
        n = len(self.assets) if n_assets is None else n_assets
        self._ensure_cols(n)
        return self.simple_r[: self.count, :n]

    def chronological(self) -> np.ndarray:
        """Log returns in time order (oldest first), shape (count, n_assets)."""
        n = len(self.assets)
        self._ensure_cols(n)
        if self.count < self.capacity:
            return self.log_r[: self.count, :n].copy()
        return np.roll(self.log_r, -self._next, axis=0)[:, :n]


def _log_return(price: float, prev: float) -> float:
    """``ln(price / prev)``; a ratio that underflows to 0 (extreme prices) uses the log difference."""
    ratio = price / prev
    return math.log(ratio) if ratio > 0.0 and math.isfinite(ratio) else math.log(price) - math.log(prev)

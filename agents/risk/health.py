"""Strategy health from ``mev.strategy.stats`` records in hopping event-time windows.

The window at event time ``now_ms`` is ``(end - window_ms, end]`` with
``end = ceil(now_ms / step_ms) * step_ms``: the hopping window (size
``window_ms``, advancing by ``step_ms``) that ends at the first step boundary at
or after ``now_ms``, so the newest records are always included. Records are
assigned by their ``ts_ms`` (end of their interval). A record with the same
(strategy, portfolio, chain, ts_ms) as an earlier one replaces it (replays are
idempotent).

Figures per strategy (USD, fractions):
inclusion_rate = included / submitted; revert_rate = reverted / submitted;
gas_to_gross = gas spent / gross profit (None when gross <= 0);
net_pnl_usd = sum of net; drawdown_usd = max over the window of (peak of the
cumulative net P&L, starting at 0) minus the cumulative net (>= 0);
win_rate = share of intervals with net > 0.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from agents.risk.errors import RiskInputError

_INT_FIELDS = ("bundles_submitted", "bundles_included", "bundles_reverted")
_FLOAT_FIELDS = ("gas_spent_usd", "gross_pnl_usd", "net_pnl_usd")


def validate_stats(rec: dict[str, Any]) -> tuple[str, int, tuple[int, ...], tuple[float, ...]]:
    """Check a strategy-stats record; returns (strategy, ts_ms, counts, money)."""
    strategy = rec.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise RiskInputError("strategy stats: 'strategy' missing")
    ts = rec.get("ts_ms")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise RiskInputError(f"strategy stats {strategy}: 'ts_ms' must be an int")
    try:
        counts = tuple(int(rec.get(k, 0)) for k in _INT_FIELDS)
        money = tuple(float(rec.get(k, 0.0)) for k in _FLOAT_FIELDS)
    except (TypeError, ValueError) as exc:
        raise RiskInputError(f"strategy stats {strategy}: bad numeric field: {exc}") from exc
    if min(counts) < 0 or counts[1] + counts[2] > counts[0]:
        raise RiskInputError(f"strategy stats {strategy}: bundle counts inconsistent {counts}")
    if not all(math.isfinite(v) for v in money) or money[0] < 0:
        raise RiskInputError(f"strategy stats {strategy}: money fields must be finite, gas >= 0")
    return strategy, ts, counts, money


_Key = tuple[str, str, int]  # (portfolio, chain, ts_ms)
_Record = tuple[tuple[int, ...], tuple[float, ...]]  # (counts, money)


class _Fold:
    """Running figures of one strategy's window, folded record by record in (ts_ms, key) order.

    A full recompute and an incremental one fold the same records in the same order, so their
    float sums are identical.
    """

    def __init__(self, end_ms: int, start_ms: int) -> None:
        self.end_ms, self.start_ms = end_ms, start_ms
        self.last: tuple[int, _Key] | None = None  # sort position of the last folded record
        self.pending: list[tuple[int, _Key]] = []  # added after ``last``, in increasing order
        self.n = self.sub = self.inc = self.rev = self.wins = 0
        self.gas = self.gross = self.net = 0.0
        self.cum = self.peak = self.drawdown = 0.0

    def fold(self, counts: tuple[int, ...], money: tuple[float, ...]) -> None:
        self.n += 1
        self.sub += counts[0]
        self.inc += counts[1]
        self.rev += counts[2]
        self.gas += money[0]
        self.gross += money[1]
        self.net += money[2]
        self.wins += money[2] > 0
        self.cum += money[2]
        self.peak = max(self.peak, self.cum)
        self.drawdown = max(self.drawdown, self.peak - self.cum)

    def tail(self) -> tuple[int, _Key] | None:
        """Sort position of the newest record this fold knows (folded or pending)."""
        return self.pending[-1] if self.pending else self.last

    def as_dict(self, strategy: str) -> dict[str, Any]:
        sub, gross, n = self.sub, self.gross, self.n
        return {
            "strategy": strategy, "window_start_ms": self.start_ms, "window_end_ms": self.end_ms,
            "intervals": n, "bundles_submitted": sub,
            "inclusion_rate": self.inc / sub if sub else None,
            "revert_rate": self.rev / sub if sub else None,
            "gas_spent_usd": self.gas, "gross_pnl_usd": gross,
            "gas_to_gross": self.gas / gross if gross > 0 else None,
            "net_pnl_usd": self.net, "drawdown_usd": self.drawdown,
            "win_rate": self.wins / n if n else None,
        }


class StrategyHealth:
    """Keeps the records of the last window per strategy and summarises them.

    Incremental: expiry pops a time heap instead of scanning every record, and a strategy's
    figures for the current hopping window are kept folded, so a read costs O(records added since
    the last read). The fold is rebuilt by a sorted scan when the window hops (once per
    ``step_ms``) or when a record does not extend it (a replacement, an out-of-order record, an
    expiry inside the window).
    """

    def __init__(self, window_ms: int = 3_600_000, step_ms: int = 300_000) -> None:
        if window_ms <= 0 or step_ms <= 0:
            raise RiskInputError("health window and step must be > 0")
        self.window_ms = window_ms
        self.step_ms = step_ms
        self._records: dict[str, dict[_Key, _Record]] = {}
        self._newest = -(2**62)
        self._expiry: list[tuple[int, str, _Key]] = []  # min-heap by ts_ms over every record added
        self._folds: dict[str, _Fold] = {}  # derived: the figures of each strategy's last read

    def add(self, rec: dict[str, Any]) -> None:
        """Add one strategy-stats record (raises RiskInputError when malformed)."""
        strategy, ts, counts, money = validate_stats(rec)
        key = (str(rec.get("portfolio", "")), str(rec.get("chain", "")), ts)
        self._put(strategy, key, (counts, money))
        self._newest = max(self._newest, ts)
        self._prune()

    def install(self, strategy: str, records: dict[_Key, _Record]) -> None:
        """Adopt a strategy's records (checkpoint restore), replacing what it had."""
        self._records[strategy] = {}
        self._folds.pop(strategy, None)
        for key, record in records.items():
            self._put(strategy, key, record)

    def _put(self, strategy: str, key: _Key, record: _Record) -> None:
        recs = self._records.setdefault(strategy, {})
        fold = self._folds.get(strategy)
        if fold is not None:
            tail = fold.tail()
            if key in recs or (tail is not None and (key[2], key) <= tail) \
                    or len(fold.pending) > len(recs):  # not an append, or nobody reads it
                del self._folds[strategy]
            else:
                fold.pending.append((key[2], key))
        if key not in recs:
            heapq.heappush(self._expiry, (key[2], strategy, key))
        recs[key] = record

    def _prune(self) -> None:
        cutoff = self._newest - self.window_ms - self.step_ms
        expiry = self._expiry
        while expiry and expiry[0][0] <= cutoff:
            ts, strategy, key = heapq.heappop(expiry)
            if self._records[strategy].pop(key, None) is not None:
                fold = self._folds.get(strategy)
                if fold is not None and ts > fold.start_ms:
                    del self._folds[strategy]

    def strategies(self) -> list[str]:
        """Strategies with at least one retained record."""
        return sorted(s for s, r in self._records.items() if r)

    def health(self, strategy: str, now_ms: int) -> dict[str, Any]:
        """Health figures of ``strategy`` over the hopping window at ``now_ms``."""
        end = -(-now_ms // self.step_ms) * self.step_ms
        recs = self._records.get(strategy, {})
        fold = self._folds.get(strategy)
        if fold is None or fold.end_ms != end:
            fold = _Fold(end, end - self.window_ms)
            fold.pending = sorted((k[2], k) for k in recs if fold.start_ms < k[2] <= end)
            if recs:
                self._folds[strategy] = fold
        done = 0
        for position in fold.pending:
            ts = position[0]
            if ts > end:
                break
            done += 1
            if ts > fold.start_ms:
                fold.fold(*recs[position[1]])
        if done:
            fold.last = fold.pending[done - 1]
            del fold.pending[:done]
        return fold.as_dict(strategy)

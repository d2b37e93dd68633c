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


class StrategyHealth:
    """Keeps the records of the last window per strategy and summarises them."""

    def __init__(self, window_ms: int = 3_600_000, step_ms: int = 300_000) -> None:
        if window_ms <= 0 or step_ms <= 0:
            raise RiskInputError("health window and step must be > 0")
        self.window_ms = window_ms
        self.step_ms = step_ms
        self._records: dict[str, dict[tuple[str, str, int], tuple[tuple[int, ...],
                                                               tuple[float, ...]]]] = {}
        self._newest = -(2**62)

    def add(self, rec: dict[str, Any]) -> None:
        """Add one strategy-stats record (raises RiskInputError when malformed)."""
        strategy, ts, counts, money = validate_stats(rec)
        key = (str(rec.get("portfolio", "")), str(rec.get("chain", "")), ts)
        self._records.setdefault(strategy, {})[key] = (counts, money)
        self._newest = max(self._newest, ts)
        self._prune()

    def _prune(self) -> None:
        cutoff = self._newest - self.window_ms - self.step_ms
        for recs in self._records.values():
            for key in [k for k in recs if k[2] <= cutoff]:
                del recs[key]

    def strategies(self) -> list[str]:
        """Strategies with at least one retained record."""
        return sorted(s for s, r in self._records.items() if r)

    def health(self, strategy: str, now_ms: int) -> dict[str, Any]:
        """Health figures of ``strategy`` over the hopping window at ``now_ms``."""
        end = -(-now_ms // self.step_ms) * self.step_ms
        start = end - self.window_ms
        recs = sorted((k[2], k, v) for k, v in self._records.get(strategy, {}).items()
                      if start < k[2] <= end)
        sub = inc = rev = 0
        gas = gross = net = 0.0
        cum = peak = drawdown = 0.0
        wins = 0
        for _ts, _key, (counts, money) in recs:
            sub += counts[0]
            inc += counts[1]
            rev += counts[2]
            gas += money[0]
            gross += money[1]
            net += money[2]
            wins += money[2] > 0
            cum += money[2]
            peak = max(peak, cum)
            drawdown = max(drawdown, peak - cum)
        n = len(recs)
        return {
            "strategy": strategy, "window_start_ms": start, "window_end_ms": end,
            "intervals": n, "bundles_submitted": sub,
            "inclusion_rate": inc / sub if sub else None,
            "revert_rate": rev / sub if sub else None,
            "gas_spent_usd": gas, "gross_pnl_usd": gross,
            "gas_to_gross": gas / gross if gross > 0 else None,
            "net_pnl_usd": net, "drawdown_usd": drawdown,
            "win_rate": wins / n if n else None,
        }

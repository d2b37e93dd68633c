"""P&L and health per strategy over a day, from ``mev.strategy.stats`` intervals and controls.

Health: ``halted`` / ``reducing`` when the strategy's trading state at the end of the day (its last
control) says so, ``degraded`` when a strategy alert fired that day, else ``ok``. Drawdown is the
largest fall of the cumulative net P&L from its running peak (USD, >= 0).

>>> stats = [{"strategy": "s", "portfolio": "p", "ts_ms": t, "bundles_submitted": 10,
...           "bundles_included": 5, "bundles_reverted": 1, "gas_spent_usd": 1.0,
...           "gross_pnl_usd": g, "net_pnl_usd": g - 1.0} for t, g in [(1, 11.0), (2, -19.0), (3, 6.0)]]
>>> [row] = strategy_rows(stats, [], [])
>>> (row["net_pnl_usd"], row["max_drawdown_usd"], row["inclusion_rate"], row["health"])
(-5.0, 20.0, 0.5, 'ok')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_SUMS = ("bundles_submitted", "bundles_included", "bundles_reverted", "gas_spent_usd",
         "gross_pnl_usd", "net_pnl_usd")


def strategy_rows(stats: Iterable[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]],
                  controls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy seen in ``stats`` (already the day's), in name order."""
    rows: dict[str, dict[str, Any]] = {}
    for s in sorted(stats, key=lambda s: s["ts_ms"]):  # the day's: integer ts_ms (model._in_day)
        name = s.get("strategy")
        if not isinstance(name, str):
            continue
        row = rows.setdefault(name, {"strategy": name, "portfolio": s.get("portfolio"), "intervals": 0,
                                     **dict.fromkeys(_SUMS, 0.0), "_cum": 0.0, "_peak": 0.0,
                                     "max_drawdown_usd": 0.0})
        row["intervals"] += 1
        for key in _SUMS:
            value = s.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] += float(value)
        row["_cum"] = row["net_pnl_usd"]
        row["_peak"] = max(row["_peak"], row["_cum"])
        row["max_drawdown_usd"] = max(row["max_drawdown_usd"], row["_peak"] - row["_cum"])
    for row in rows.values():
        del row["_cum"], row["_peak"]
        for key in ("bundles_submitted", "bundles_included", "bundles_reverted"):
            row[key] = int(row[key])
        sub = row["bundles_submitted"]
        row["inclusion_rate"] = row["bundles_included"] / sub if sub else None
        row["revert_rate"] = row["bundles_reverted"] / sub if sub else None
        fired = [a for a in alerts if a.get("scope") == "strategy" and a.get("entity_id") == row["strategy"]]
        row["alerts"] = len(fired)
        state = next((c["state"] for c in reversed(controls)
                      if c.get("scope") == f"strategy:{row['strategy']}"), None)
        row["trading_state"] = state or "ACTIVE"
        row["health"] = ("halted" if state == "HALTED" else "reducing" if state == "REDUCING"
                         else "degraded" if fired else "ok")
    return [rows[name] for name in sorted(rows)]

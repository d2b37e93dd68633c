"""The incremental StrategyHealth against the scan-everything implementation it replaced: equal
figures (floats bit for bit) and equal retained records, with replays, late records and hops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.risk.health import StrategyHealth, validate_stats


class BruteForceHealth:
    """The StrategyHealth of before: prunes by scanning, sorts the window on every read."""

    def __init__(self, window_ms: int, step_ms: int) -> None:
        self.window_ms, self.step_ms = window_ms, step_ms
        self._records: dict[str, dict[tuple[str, str, int], Any]] = {}
        self._newest = -(2**62)

    def add(self, rec: dict[str, Any]) -> None:
        strategy, ts, counts, money = validate_stats(rec)
        key = (str(rec.get("portfolio", "")), str(rec.get("chain", "")), ts)
        self._records.setdefault(strategy, {})[key] = (counts, money)
        self._newest = max(self._newest, ts)
        cutoff = self._newest - self.window_ms - self.step_ms
        for recs in self._records.values():
            for k in [k for k in recs if k[2] <= cutoff]:
                del recs[k]

    def health(self, strategy: str, now_ms: int) -> dict[str, Any]:
        end = -(-now_ms // self.step_ms) * self.step_ms
        start = end - self.window_ms
        recs = sorted((k[2], k, v) for k, v in self._records.get(strategy, {}).items()
                      if start < k[2] <= end)
        sub = inc = rev = wins = 0
        gas = gross = net = cum = peak = drawdown = 0.0
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
        return {"strategy": strategy, "window_start_ms": start, "window_end_ms": end,
                "intervals": n, "bundles_submitted": sub,
                "inclusion_rate": inc / sub if sub else None,
                "revert_rate": rev / sub if sub else None, "gas_spent_usd": gas,
                "gross_pnl_usd": gross, "gas_to_gross": gas / gross if gross > 0 else None,
                "net_pnl_usd": net, "drawdown_usd": drawdown, "win_rate": wins / n if n else None}


def _record(rng: np.random.Generator, strategy: str, ts: int) -> dict[str, Any]:
    sub = int(rng.integers(0, 20))
    inc = int(rng.integers(0, sub + 1))
    return {"strategy": strategy, "portfolio": ("alpha", "beta")[int(rng.integers(2))],
            "chain": ("ethereum", "arbitrum")[int(rng.integers(2))], "ts_ms": ts,
            "bundles_submitted": sub, "bundles_included": inc,
            "bundles_reverted": int(rng.integers(0, sub - inc + 1)),
            "gas_spent_usd": float(rng.lognormal(0, 1)), "gross_pnl_usd": float(rng.normal(5, 20)),
            "net_pnl_usd": float(rng.normal(0, 30))}


@pytest.mark.parametrize("seed", range(5))
def test_incremental_health_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    window_ms, step_ms = 1_000 * int(rng.integers(5, 60)), 1_000 * int(rng.integers(1, 10))
    new, old = StrategyHealth(window_ms, step_ms), BruteForceHealth(window_ms, step_ms)
    strategies = ("arb", "liq", "sandwich")
    ts = 0
    for _ in range(4_000):
        ts += int(rng.integers(0, 400))
        strategy = strategies[int(rng.integers(len(strategies)))]
        roll = rng.random()
        at = ts - int(rng.integers(0, window_ms + 2 * step_ms)) if roll < 0.05 else ts  # late
        if roll > 0.97:  # a replay of the same interval, maybe with other figures
            at = (ts // 1_000) * 1_000
        rec = _record(rng, strategy, at)
        new.add(rec)
        old.add(rec)
        if rng.random() < 0.3:
            now = ts - (int(rng.integers(0, 3 * step_ms)) if rng.random() < 0.1 else 0)
            for s in strategies:
                assert new.health(s, now) == old.health(s, now)
    assert new._records == old._records
    assert new.strategies() == sorted(s for s, r in old._records.items() if r)


def test_install_replaces_records_and_the_fold() -> None:
    rng = np.random.default_rng(9)
    h = StrategyHealth(10_000, 1_000)
    for i in range(50):
        h.add(_record(rng, "s", 500 * i))
    before = h.health("s", 25_000)
    copy = StrategyHealth(10_000, 1_000)
    copy._newest = h._newest
    copy.install("s", dict(h._records["s"]))
    assert copy.health("s", 25_000) == before
    h.install("s", {})
    assert h.health("s", 25_000)["intervals"] == 0

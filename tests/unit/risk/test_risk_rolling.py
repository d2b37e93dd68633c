"""Incremental gas window (agents/risk/rolling.py, GasState) against the brute-force computation it
replaced: same window membership, same p95 (nearest rank), max and n; the mean correctly rounded."""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

import numpy as np
import pytest

from agents.risk.market import GasState, nearest_rank
from agents.risk.rolling import TimeWindowSample, nearest_rank_index


class BruteForceGas:
    """The GasState of before the incremental one: a deque per chain, scanned per read."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._obs: dict[str, deque[tuple[int, float]]] = {}
        self._newest: dict[str, int] = {}

    def add(self, chain: str, ts_ms: int, gwei: float) -> None:
        newest = max(ts_ms, self._newest.get(chain, ts_ms))
        self._newest[chain] = newest
        if ts_ms <= newest - self.window_ms:
            return
        q = self._obs.setdefault(chain, deque())
        q.append((ts_ms, gwei))
        while q and q[0][0] <= newest - self.window_ms:
            q.popleft()

    def values(self, chain: str) -> list[float]:
        cutoff = self._newest[chain] - self.window_ms
        return [v for ts, v in self._obs[chain] if ts > cutoff]

    def stats(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for chain in sorted(self._obs):
            vals = self.values(chain)
            if vals:
                out[chain] = {"mean": float(np.mean(vals)), "p95": nearest_rank(vals, 0.95),
                              "max": float(max(vals)), "n": float(len(vals))}
        return out


def _exact_mean(values: list[float]) -> float:
    return float(sum(map(Fraction, values)) / len(values))


@pytest.mark.parametrize("seed", range(6))
def test_gas_state_matches_brute_force_with_evictions(seed: int) -> None:
    """Random ticks, partly out of order and partly too old, on three chains with windows that
    fill and slide: after every tick the statistics equal the brute force (mean: the exactly
    rounded mean, within 4 ulps of numpy's pairwise mean)."""
    rng = np.random.default_rng(seed)
    window_ms = int(rng.integers(50, 2_000))
    new, old = GasState(window_ms), BruteForceGas(window_ms)
    ts = 0
    for _ in range(3_000):
        chain = ("ethereum", "arbitrum", "base")[int(rng.integers(3))]
        ts += int(rng.integers(0, 20))
        jitter = int(rng.integers(0, window_ms + 100)) if rng.random() < 0.2 else 0  # late ticks
        scale = 10.0 ** float(rng.uniform(-3, 3))
        gwei = float(rng.choice([rng.lognormal(0, 1) * scale, round(scale, 1), 0.0]))
        new.add(chain, ts - jitter, gwei)
        old.add(chain, ts - jitter, gwei)
        got, want = new.stats(), old.stats()
        assert list(got) == list(want)
        for c in want:
            assert {k: got[c][k] for k in ("p95", "max", "n")} == {
                k: want[c][k] for k in ("p95", "max", "n")}
            assert got[c]["mean"] == _exact_mean(old.values(c))
            assert math.isclose(got[c]["mean"], want[c]["mean"], rel_tol=4 * 2.0**-52, abs_tol=0.0)


def test_gas_state_restore_rebuilds_an_equal_state() -> None:
    rng = np.random.default_rng(3)
    g = GasState(window_ms=500)
    for i in range(2_000):
        g.add(("ethereum", "arbitrum")[i % 2], i * 3 - int(rng.integers(0, 300)),
              float(rng.lognormal(3, 1)))
    copy = GasState(window_ms=500)
    copy.restore(g.observations(), g.newest())
    assert copy.stats() == g.stats()
    assert {c: vars(w) for c, w in copy._windows.items()} == {c: vars(w) for c, w in g._windows.items()}


def test_gas_state_restore_drops_what_an_older_checkpoint_kept_outside_the_window() -> None:
    """Blobs of the deque-based GasState could hold ticks behind the cutoff (late ticks queued
    behind newer ones); a restore keeps the window only."""
    g = GasState(window_ms=100)
    g.restore({"ethereum": [(500, 1.0), (350, 99.0), (450, 3.0)]}, {"ethereum": 500})
    assert g.stats() == {"ethereum": {"mean": 2.0, "p95": 3.0, "max": 3.0, "n": 2.0}}


def test_time_window_sample_reads_do_not_depend_on_arrival_order() -> None:
    obs = [(i, float(v)) for i, v in enumerate(np.random.default_rng(1).normal(50, 20, 500))]
    a, b = TimeWindowSample(obs), TimeWindowSample()
    for ts, v in reversed(obs):
        b.add(ts, v)
    for w in (a, b):
        w.expire(99)
    assert (a.count, a.mean(), a.quantile(0.95), a.max()) == (
        b.count, b.mean(), b.quantile(0.95), b.max())
    assert a.count == 400 and a.mean() == _exact_mean([v for ts, v in obs if ts > 99])


def test_empty_window_reads_nan_and_rank_rule_matches_nearest_rank() -> None:
    w = TimeWindowSample()
    assert math.isnan(w.mean()) and math.isnan(w.quantile(0.95)) and math.isnan(w.max())
    for n in range(1, 300):
        vals = list(range(n))
        assert nearest_rank(vals, 0.95) == vals[nearest_rank_index(n, 0.95) - 1]
    with pytest.raises(ValueError):
        nearest_rank_index(0, 0.95)


def test_extreme_magnitudes_keep_an_exact_mean() -> None:
    vals = [1e300, 5e-324, 1.0, 1e-300, 2.5]
    w = TimeWindowSample((i, v) for i, v in enumerate(vals))
    assert w.mean() == _exact_mean(vals)
    w.expire(0)  # the huge value leaves: no residue left in the sum
    assert w.mean() == _exact_mean(vals[1:])

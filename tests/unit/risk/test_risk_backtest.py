"""Backtest statistics against scipy and hand-counted transitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from agents.risk import backtest as bt


@pytest.mark.parametrize(("n", "x"), [(250, 0), (250, 2), (250, 7), (500, 30), (100, 100)])
def test_kupiec_matches_binomial_likelihood_ratio(n: int, x: int) -> None:
    p = 0.01
    lr, pv = bt.kupiec_pof(n, x, 0.99)
    ref = 2 * (stats.binom.logpmf(x, n, x / n) - stats.binom.logpmf(x, n, p))
    assert lr == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert pv == pytest.approx(stats.chi2.sf(ref, 1), rel=1e-9, abs=1e-12)


def christoffersen_reference(h: list[bool]) -> float:
    counts = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    for a, b in itertools.pairwise(h):
        counts[(int(a), int(b))] += 1
    n00, n01, n10, n11 = (counts[(0, 0)], counts[(0, 1)], counts[(1, 0)], counts[(1, 1)])
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0
    # binomial log-likelihoods via scipy (0*log 0 handled by logpmf)
    l0 = stats.binom.logpmf(n01 + n11, n00 + n01 + n10 + n11, pi)
    l1 = stats.binom.logpmf(n01, n00 + n01, pi0) + stats.binom.logpmf(n11, n10 + n11, pi1)
    # the binomial coefficients cancel between numerator and denominator:
    from math import comb, log
    c0 = log(comb(n00 + n01 + n10 + n11, n01 + n11))
    c1 = log(comb(n00 + n01, n01)) + log(comb(n10 + n11, n11))
    return -2 * ((l0 - c0) - (l1 - c1))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=300))
def test_christoffersen_matches_reference(h: list[bool]) -> None:
    lr, pv = bt.christoffersen_independence(h)
    ref = max(0.0, christoffersen_reference(h))
    assert lr == pytest.approx(ref, rel=1e-7, abs=1e-7)
    assert pv == pytest.approx(stats.chi2.sf(ref, 1), rel=1e-6, abs=1e-12)


def test_clustered_exceptions_reject_independence() -> None:
    h = [False] * 200 + [True] * 6 + [False] * 44
    _, pv = bt.christoffersen_independence(h)
    assert pv < 0.01


@pytest.mark.parametrize(("x", "zone"), [(0, "green"), (4, "green"), (5, "yellow"),
                                         (9, "yellow"), (10, "red"), (40, "red")])
def test_traffic_light(x: int, zone: str) -> None:
    assert bt.traffic_light(x) == zone
    hits = np.zeros(300, dtype=bool)
    hits[-x:] = x > 0  # exceptions among the last 250
    hits[:50] = True   # older than the last 250: must not count
    res = bt.evaluate(hits, 0.99)
    assert res.zone == zone and res.zone_exceptions == x and res.zone_observations == 250
    assert res.observations == 300 and res.exceptions == x + 50


def test_chi2_sf_without_scipy() -> None:
    for x in (0.0, 0.5, 3.84, 6.63, 20.0):
        assert bt.chi2_1_sf(x) == pytest.approx(stats.chi2.sf(x, 1), rel=1e-9)


def test_streaming_tracker_judges_previous_forecast() -> None:
    tr = bt.StreamingBacktest(0.99)
    assert tr.observe(-1e9) is None  # nothing forecast yet
    tr.forecast(100.0, np.array([1.0]))
    assert tr.observe(-50.0) is False
    tr.forecast(100.0, None)
    assert tr.observe(-150.0) is True
    assert tr.observe(-150.0) is None  # each forecast is judged once
    res = tr.result()
    assert (res.observations, res.exceptions) == (2, 1)

"""VaR/ES against independent computations and property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from agents.risk import var as v

finite = st.floats(-0.3, 0.3, allow_nan=False, allow_infinity=False)
confs = st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995])


def direct_var_es(pnl: np.ndarray, c: float) -> tuple[float, float]:
    """The documented rule written out with a plain sort and integer arithmetic."""
    p = sorted(pnl.tolist())
    n = len(p)
    # n*(1-c) with c given to 3 decimals: exact in integers
    k = max(1, -(-n * round((1 - c) * 1000) // 1000))
    return -p[k - 1], -sum(p[:k]) / k


@pytest.mark.parametrize(("n", "c", "k"), [(500, 0.99, 5), (100, 0.95, 5), (250, 0.99, 3),
                                           (10, 0.999, 1), (40, 0.975, 1), (1000, 0.975, 25)])
def test_tail_count_follows_ceil_rule(n: int, c: float, k: int) -> None:
    assert v.tail_count(n, c) == k


@settings(max_examples=60, deadline=None)
@given(arrays(float, st.integers(1, 300), elements=st.floats(-1e6, 1e6)), confs)
def test_historical_matches_direct_order_statistic(pnl: np.ndarray, c: float) -> None:
    var, es = v.historical_var_es(pnl, c)
    dvar, des = direct_var_es(pnl, c)
    assert var == pytest.approx(dvar, abs=1e-9)
    assert es == pytest.approx(des, rel=1e-12, abs=1e-6)
    tail = v.SortedPnl(pnl).tail(c)
    assert (tail.var_usd, tail.es_usd) == pytest.approx((var, es), abs=1e-6)


scen = arrays(float, st.tuples(st.integers(5, 120), st.integers(1, 6)), elements=finite)


@settings(max_examples=60, deadline=None)
@given(scen, st.data())
def test_properties_es_ge_var_and_monotone(r: np.ndarray, data: st.DataObject) -> None:
    e = np.array(data.draw(st.lists(st.floats(-1e5, 1e5), min_size=r.shape[1],
                                    max_size=r.shape[1])))
    pnl = v.scenario_pnl(np.expm1(r), e)
    last = -math.inf
    for c in (0.9, 0.95, 0.975, 0.99):
        var, es = v.historical_var_es(pnl, c)
        assert es >= var - 1e-9 * (1 + abs(var))
        assert var >= last - 1e-9 * (1 + abs(var))
        last = var


@settings(max_examples=60, deadline=None)
@given(scen, st.floats(0.01, 100.0), confs, st.randoms(use_true_random=False))
def test_homogeneity_and_permutation(r: np.ndarray, k: float, c: float, rnd) -> None:
    e = np.linspace(-1000, 2000, r.shape[1])
    g = np.expm1(r)
    var, es = v.historical_var_es(v.scenario_pnl(g, e), c)
    var_k, es_k = v.historical_var_es(v.scenario_pnl(g, k * e), c)
    assert var_k == pytest.approx(k * var, rel=1e-9, abs=1e-6)
    assert es_k == pytest.approx(k * es, rel=1e-9, abs=1e-6)
    perm = list(range(r.shape[0]))
    rnd.shuffle(perm)
    assert v.historical_var_es(v.scenario_pnl(g[perm], e), c) == pytest.approx((var, es))


@settings(max_examples=60, deadline=None)
@given(scen, confs)
def test_historical_components_sum_to_var(r: np.ndarray, c: float) -> None:
    g = np.expm1(r)
    legs_asset = np.array([i % r.shape[1] for i in range(2 * r.shape[1])])
    legs_exp = np.linspace(-500, 900, legs_asset.size)
    e = np.bincount(legs_asset, weights=legs_exp, minlength=r.shape[1])
    tail = v.SortedPnl(v.scenario_pnl(g, e)).tail(c)
    comp = v.historical_components(g, legs_asset, legs_exp, tail.scenario)
    assert comp.sum() == pytest.approx(tail.var_usd, rel=1e-9, abs=1e-6)


def test_parametric_closed_form_and_components() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T * 1e-4
    e = np.array([1000.0, -500.0, 250.0, 4000.0])
    sigma = math.sqrt(e @ cov @ e)
    for c in (0.95, 0.99):
        var, es = v.parametric_var_es(v.portfolio_sigma(cov, e), c)
        assert var == pytest.approx(stats.norm.ppf(c) * sigma, rel=1e-9)
        # ES of N(0, sigma): -E[X | X < -VaR], integrated numerically by scipy
        es_ref = -stats.norm(scale=sigma).expect(lambda x: x, ub=-var) / (1 - c)
        assert es == pytest.approx(es_ref, rel=1e-6)
        comp = v.parametric_components(cov, e, np.arange(4), e, c)
        assert comp.sum() == pytest.approx(var, rel=1e-9)
        # scaling by any nonzero k (also negative) scales parametric VaR by |k|
        assert v.parametric_var_es(v.portfolio_sigma(cov, -3 * e), c)[0] == pytest.approx(3 * var)


def test_parametric_marginal_is_the_gradient() -> None:
    cov = np.array([[4e-4, 1e-4], [1e-4, 9e-4]])
    e = np.array([1000.0, 2000.0])
    m = v.parametric_marginal(cov, e, 0.99)
    h = 1e-3
    for i in range(2):
        up, dn = e.copy(), e.copy()
        up[i] += h
        dn[i] -= h
        fd = (v.parametric_var_es(v.portfolio_sigma(cov, up), 0.99)[0]
              - v.parametric_var_es(v.portfolio_sigma(cov, dn), 0.99)[0]) / (2 * h)
        assert m[i] == pytest.approx(fd, rel=1e-6)


def test_historical_var_of_lognormal_returns_matches_closed_form() -> None:
    s, e, c = 0.02, 1e6, 0.99
    r = np.random.default_rng(5).normal(0, s, size=(400_000, 1))
    var, es = v.historical_var_es(v.scenario_pnl(np.expm1(r), np.array([e])), c)
    q = stats.norm.ppf(1 - c) * s
    var_ref = -e * math.expm1(q)
    # E[exp(r) - 1 | r < q] for r ~ N(0, s^2)
    es_ref = -e * (math.exp(s * s / 2) * stats.norm.cdf(q / s - s) / (1 - c) - 1)
    assert var == pytest.approx(var_ref, rel=0.02)
    assert es == pytest.approx(es_ref, rel=0.02)


def test_horizon_scaling() -> None:
    assert v.scale_horizon(100.0, 4) == pytest.approx(200.0)
    with pytest.raises(ValueError):
        v.scale_horizon(1.0, 0)


def test_exit_cost_model() -> None:
    s_bps, depth = 20.0, 1000.0
    s = s_bps / 1e4
    cost = v.exit_cost_usd(np.array([500.0, -1000.0, 3000.0, 1e9, 50.0]),
                           np.array([s_bps] * 5), np.array([depth, depth, depth, depth, np.nan]))
    assert cost[0] == pytest.approx(500 * s / 2)
    assert cost[1] == pytest.approx(1000 * s / 2)  # continuous at the depth
    # integral of (s/2) * max(1, x/depth) from 0 to 3000
    assert cost[2] == pytest.approx(depth * s / 2 + s / (4 * depth) * (3000**2 - depth**2))
    assert cost[3] == pytest.approx(1e9)  # capped at the exposure
    assert cost[4] == pytest.approx(50 * s / 2)  # unknown depth: spread only
    lvar = v.liquidity_adjusted_var(10.0, np.array([500.0]), np.array([s_bps]), np.array([depth]))
    assert lvar == pytest.approx(10.0 + 500 * s / 2)

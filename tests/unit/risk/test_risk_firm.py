"""Firm-wide VaR/ES by historical aggregation of the portfolios' joint P&L vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.risk.firm import aggregate, joint_pnl, scenario_pnl


def _brute_var_es(pnl: list[float], confidence: float) -> tuple[float, float]:
    """The quantile rule of agents.risk.var written out on a sorted list (independent of numpy)."""
    ordered = sorted(pnl)
    k = min(len(ordered), max(1, math.ceil(round(len(ordered) * (1 - confidence), 9))))
    return -ordered[k - 1], -sum(ordered[:k]) / k


def test_firm_var_is_read_from_the_joint_vector_not_summed() -> None:
    rng = np.random.default_rng(7)
    a, b, c = (rng.normal(0, s, 500) for s in (100.0, 300.0, 50.0))
    firm = aggregate({"a": a, "b": b, "c": c})
    joint = [float(x) for x in a + b + c]
    for conf in (0.95, 0.99):
        var, es = _brute_var_es(joint, conf)
        assert firm.var[conf] == pytest.approx(var, rel=1e-12)
        assert firm.es[conf] == pytest.approx(es, rel=1e-12)
        alone = sum(_brute_var_es([float(x) for x in v], conf)[0] for v in (a, b, c))
        assert firm.var[conf] < alone, "independent books diversify"
        assert firm.diversification_usd(conf) == pytest.approx(alone - var, rel=1e-9)
    assert firm.n_scenarios == 500


def test_offsetting_books_cancel_and_comonotonic_books_add() -> None:
    base = np.linspace(-50.0, 50.0, 101)
    hedged = aggregate({"long": base, "short": -base})
    assert hedged.var[0.99] == 0.0 and hedged.es[0.99] == 0.0
    assert hedged.standalone_var["long"][0.99] > 0 and hedged.standalone_var["short"][0.99] > 0
    same = aggregate({"x": base, "y": 2 * base})
    assert same.var[0.95] == pytest.approx(same.standalone_var["x"][0.95] + same.standalone_var["y"][0.95])
    assert same.diversification_usd(0.95) == pytest.approx(0.0, abs=1e-9)


def test_es_is_subadditive_on_random_books() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        books = {f"p{i}": rng.standard_t(3, 250) * rng.uniform(10, 1000) for i in range(4)}
        firm = aggregate(books)
        for conf in (0.95, 0.99):
            assert firm.es[conf] <= sum(e[conf] for e in firm.standalone_es.values()) + 1e-9


def test_one_portfolio_is_its_own_firm_and_no_scenario_gives_zero() -> None:
    v = np.array([-3.0, 1.0, 2.0, -7.0])
    firm = aggregate({"only": v}, confidences=(0.75,))
    assert firm.var[0.75] == firm.standalone_var["only"][0.75] == 7.0
    empty = aggregate({})
    assert empty.n_scenarios == 0 and empty.var[0.99] == 0.0 and empty.es[0.95] == 0.0


def test_vectors_over_different_scenarios_are_refused() -> None:
    with pytest.raises(ValueError, match="same scenarios"):
        joint_pnl({"a": np.zeros(3), "b": np.zeros(4)})


def test_scenario_pnl_from_net_exposures() -> None:
    returns = np.array([[0.01, -0.02], [-0.05, 0.00], [0.02, 0.03]])
    pnl = scenario_pnl({"ETH": 1000.0, "BTC": -500.0, "NEVER_PRICED": 1e9}, {"ETH": 0, "BTC": 1}, returns)
    assert pnl.tolist() == pytest.approx([10.0 + 10.0, -50.0, 20.0 - 15.0])

"""Offline calculator on small CSV files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from agents.errors import MevRiskError
from agents.risk.errors import RiskInputError
from agents.risk.offline import backtest_var, compute_var


def write(tmp: Path, prices: np.ndarray, assets: list[str], pos: dict) -> tuple[Path, Path]:
    csv = tmp / "prices.csv"
    lines = ["date," + ",".join(assets)]
    lines += [f"2024-01-{i:04d}," + ",".join(f"{p:.10f}" for p in row)
              for i, row in enumerate(prices)]
    csv.write_text("\n".join(lines) + "\n")
    js = tmp / "pos.json"
    js.write_text(json.dumps(pos))
    return csv, js


def random_prices(n: int, seed: int = 1, sd: tuple[float, ...] = (0.02, 0.04)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = rng.normal(0, sd, size=(n - 1, len(sd)))
    return np.vstack([np.ones(len(sd)) * 100, 100 * np.exp(np.cumsum(r, axis=0))])


def test_compute_var_historical_matches_direct(tmp_path: Path) -> None:
    prices = random_prices(301)
    csv, js = write(tmp_path, prices, ["ETH", "BTC"], {"ETH": 10_000, "BTC": -5_000})
    out = compute_var(csv, js, confidence=0.99, window=200)
    # independent: simple returns from the (rounded) CSV prices, last 200
    p = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=(1, 2))
    simple = p[1:] / p[:-1] - 1
    pnl = np.sort(simple[-200:] @ np.array([10_000.0, -5_000.0]))
    for key, c in (("var_95", 0.95), ("var_99", 0.99)):
        k = math.ceil(round(200 * (1 - c), 9))
        assert out[key] == pytest.approx(-pnl[k - 1], rel=1e-9)
    assert out["es_975"] == pytest.approx(-pnl[:5].mean(), rel=1e-9)
    assert out["n_scenarios"] == 200 and out["window"] == 200 and out["method"] == "historical"
    assert sum(out["component_var"].values()) == pytest.approx(out["var_99"], rel=1e-9)
    assert json.loads(json.dumps(out)) == out


def test_compute_var_parametric(tmp_path: Path) -> None:
    csv, js = write(tmp_path, random_prices(101), ["ETH", "BTC"], {"ETH": 1_000})
    out = compute_var(csv, js, window=100, method="parametric")
    r = np.diff(np.log(np.loadtxt(csv, delimiter=",", skiprows=1, usecols=(1,))))
    w = 0.94 ** np.arange(len(r))[::-1]
    var_ewma = (w * r * r).sum() * 0.06 / (1 - 0.94 ** len(r))
    sigma = 1_000 * math.sqrt(var_ewma)
    assert out["var_99"] == pytest.approx(stats.norm.ppf(0.99) * sigma, rel=1e-9)
    assert out["es_99"] == pytest.approx(sigma * stats.norm.pdf(stats.norm.ppf(0.99)) / 0.01)
    assert out["component_var"] == {"ETH": pytest.approx(out["var_99"])}


def test_backtest_var_matches_independent_loop(tmp_path: Path) -> None:
    csv, js = write(tmp_path, random_prices(420, seed=4), ["ETH", "BTC"],
                    {"ETH": 5_000, "BTC": 5_000})
    out = backtest_var(csv, js, confidence=0.95, window=100)
    p = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=(1, 2))
    pnl = (p[1:] / p[:-1] - 1) @ np.array([5_000.0, 5_000.0])
    hits = []
    for t in range(100, len(pnl)):
        hist = np.sort(pnl[t - 100: t])
        hits.append(pnl[t] < hist[4])  # k = ceil(100 * 0.05) = 5
    x, n = sum(hits), len(hits)
    assert (out["observations"], out["exceptions"]) == (n, x)
    ref_lr = 2 * (stats.binom.logpmf(x, n, x / n) - stats.binom.logpmf(x, n, 0.05))
    assert out["kupiec_lr"] == pytest.approx(ref_lr, rel=1e-9)
    assert out["kupiec_pvalue"] == pytest.approx(stats.chi2.sf(ref_lr, 1), rel=1e-9)
    assert out["zone"] in {"green", "yellow", "red"}
    assert len(out["exception_labels"]) == x


def test_backtest_parametric_and_red_zone_on_regime_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    r = np.concatenate([rng.normal(0, 0.001, 300), rng.normal(0, 0.05, 250)])
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))[:, None]
    csv, js = write(tmp_path, prices, ["ETH"], {"ETH": 1_000})
    hist = backtest_var(csv, js, window=250)
    assert hist["zone"] == "red"
    par = backtest_var(csv, js, window=250, method="parametric")
    assert par["observations"] == hist["observations"] == 300


@pytest.mark.parametrize(("prices_text", "pos", "msg"), [
    ("date,ETH\n1,100\n2,101\n3,102\n", {"DOGE": 1}, "unknown assets"),
    ("date,ETH\n1,100\n2,101\n", {"ETH": 1}, "need at least"),
    ("date,ETH\n1,100\n2,0\n3,102\n4,100\n", {"ETH": 1}, "must be > 0"),
    ("date,ETH\n1,100\n2,-3\n3,102\n4,100\n", {"ETH": 1}, "must be > 0"),
    ("date,ETH\n1,100\n2,abc\n3,102\n4,100\n", {"ETH": 1}, "not a number"),
    ("date,ETH\n1,100\n2,101,7\n3,102\n4,100\n", {"ETH": 1}, "columns"),
])
def test_clear_errors(tmp_path: Path, prices_text: str, pos: dict, msg: str) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(prices_text)
    js = tmp_path / "p.json"
    js.write_text(json.dumps(pos))
    with pytest.raises(RiskInputError, match=msg) as info:
        compute_var(csv, js, window=2)
    assert isinstance(info.value, MevRiskError)


def test_bad_method_and_missing_file(tmp_path: Path) -> None:
    csv, js = write(tmp_path, random_prices(10), ["ETH", "BTC"], {"ETH": 1})
    with pytest.raises(RiskInputError, match="method"):
        compute_var(csv, js, window=5, method="montecarlo")
    with pytest.raises(RiskInputError, match="cannot read"):
        compute_var(tmp_path / "nope.csv", js, window=5)

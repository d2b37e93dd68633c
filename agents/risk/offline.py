"""Offline VaR calculator and backtest on CSV prices (the core without Kafka).

Inputs
------
* ``prices_csv``: header row, then one row per observation in time order
  (oldest first). First column: timestamp or date (kept as a label); every other
  column: the USD price of the asset named in the header (> 0).
* ``positions_json``: a JSON object ``{asset: exposure_usd}`` (signed USD).

Returns are log returns of consecutive rows; scenario P&L and the quantile
rule are those of :mod:`agents.risk.var`. The parametric method uses the
RiskMetrics EWMA covariance (lambda 0.94) of the window's returns.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from agents.risk import backtest as btlib
from agents.risk import var as varlib
from agents.risk.errors import RiskInputError
from agents.risk.ewma import EwmaCovariance

METHODS = ("historical", "parametric")


def read_prices(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse the prices CSV into (labels, asset names, prices (rows, assets))."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise RiskInputError(f"cannot read prices file {path}: {exc}") from exc
    if not rows or len(rows[0]) < 2:
        raise RiskInputError(f"{path}: need a header with a time column and >= 1 asset column")
    assets = [c.strip() for c in rows[0][1:]]
    if len(set(assets)) != len(assets) or not all(assets):
        raise RiskInputError(f"{path}: asset column names must be non-empty and unique")
    labels: list[str] = []
    data = np.empty((len(rows) - 1, len(assets)))
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(assets) + 1:
            raise RiskInputError(f"{path}:{i}: expected {len(assets) + 1} columns, got {len(row)}")
        labels.append(row[0].strip())
        for j, cell in enumerate(row[1:]):
            try:
                price = float(cell)
            except ValueError:
                raise RiskInputError(
                    f"{path}:{i}: price of {assets[j]} is not a number: {cell!r}") from None
            if not (price > 0.0 and math.isfinite(price)):
                raise RiskInputError(f"{path}:{i}: price of {assets[j]} must be > 0, got {cell!r}")
            data[i - 2, j] = price
    return labels, assets, data


def read_positions(path: str | Path, assets: list[str]) -> np.ndarray:
    """Parse ``{asset: exposure_usd}`` into an exposure vector aligned with ``assets``."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RiskInputError(f"cannot read positions file {path}: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise RiskInputError(f"{path}: expected a non-empty JSON object asset -> exposure_usd")
    unknown = sorted(set(raw) - set(assets))
    if unknown:
        raise RiskInputError(
            f"{path}: unknown assets {unknown}; the prices file has {sorted(assets)}")
    e = np.zeros(len(assets))
    for asset, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise RiskInputError(f"{path}: exposure of {asset} must be a finite number")
        e[assets.index(asset)] = float(value)
    return e


def _load(prices_csv: str | Path, positions_json: str | Path, window: int, method: str,
          confidence: float, extra_rows: int) -> tuple[list[str], list[str], np.ndarray,
                                                       np.ndarray]:
    if method not in METHODS:
        raise RiskInputError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise RiskInputError(f"confidence must be in (0, 1), got {confidence}")
    if window < 2:
        raise RiskInputError(f"window must be >= 2, got {window}")
    labels, assets, prices = read_prices(prices_csv)
    e = read_positions(positions_json, assets)
    need = window + 1 + extra_rows
    if prices.shape[0] < need:
        raise RiskInputError(
            f"{prices_csv}: {prices.shape[0]} price rows, need at least {need} "
            f"for a window of {window} returns")
    return labels, assets, np.diff(np.log(prices), axis=0), e


def _ewma_cov(log_r: np.ndarray, lam: float) -> np.ndarray:
    ew = EwmaCovariance(lam)
    for row in log_r:
        ew.update(row)
    return ew.covariance(log_r.shape[1])


def compute_var(prices_csv_path: str | Path, positions_json_path: str | Path,
                confidence: float = 0.99, window: int = 500, method: str = "historical",
                ewma_lambda: float = 0.94) -> dict[str, Any]:
    """VaR/ES (USD, positive = loss) of constant exposures over the last ``window`` returns.

    Keys: var_95, var_99, es_95, es_975, es_99, var, es (at ``confidence``),
    confidence, method, window, n_scenarios, component_var (asset -> USD, Euler
    at ``confidence``; sums to ``var``), exposure_usd.
    """
    _, assets, log_r, e = _load(prices_csv_path, positions_json_path, window, method,
                                confidence, 0)
    r = log_r[-window:]
    levels = sorted({0.95, 0.975, 0.99, confidence})
    if method == "historical":
        g = np.expm1(r)
        sp = varlib.SortedPnl(g @ e)
        tails = {c: sp.tail(c) for c in levels}
        figures = {c: (tails[c].var_usd, tails[c].es_usd) for c in levels}
        comp = -e * g[tails[confidence].scenario]
    else:
        cov = _ewma_cov(r, ewma_lambda)
        sigma = varlib.portfolio_sigma(cov, e)
        figures = {c: varlib.parametric_var_es(sigma, c) for c in levels}
        comp = varlib.parametric_components(cov, e, np.arange(len(assets)), e, confidence)
    return {
        "var_95": figures[0.95][0], "var_99": figures[0.99][0],
        "es_95": figures[0.95][1], "es_975": figures[0.975][1], "es_99": figures[0.99][1],
        "var": figures[confidence][0], "es": figures[confidence][1],
        "confidence": confidence, "method": method, "window": window,
        "n_scenarios": int(r.shape[0]),
        "component_var": {a: float(comp[i]) for i, a in enumerate(assets) if e[i] != 0.0},
        "exposure_usd": {a: float(e[i]) for i, a in enumerate(assets) if e[i] != 0.0},
    }


def backtest_var(prices_csv: str | Path, positions_json: str | Path, confidence: float = 0.99,
                 window: int = 250, method: str = "historical",
                 ewma_lambda: float = 0.94) -> dict[str, Any]:
    """Rolling one-step-ahead VaR backtest with constant exposures.

    For each return t after the first ``window``: forecast VaR from returns
    ``t-window .. t-1`` (historical: the quantile rule; parametric: EWMA
    covariance of the information up to t-1), realised P&L
    ``sum e * (exp(r_t) - 1)``, exception when P&L < -VaR.
    """
    labels, _, log_r, e = _load(prices_csv, positions_json, window, method, confidence, 1)
    g = np.expm1(log_r)
    pnl_all = g @ e
    n_obs = log_r.shape[0] - window
    forecasts = np.empty(n_obs)
    if method == "historical":
        for i in range(n_obs):
            forecasts[i] = varlib.historical_var_es(pnl_all[i: i + window], confidence)[0]
    else:
        ew = EwmaCovariance(ewma_lambda)
        for row in log_r[:window]:
            ew.update(row)
        for i in range(n_obs):
            sigma = varlib.portfolio_sigma(ew.covariance(), e)
            forecasts[i] = varlib.parametric_var_es(sigma, confidence)[0]
            ew.update(log_r[window + i])
    realised = pnl_all[window:]
    hits = btlib.exceptions(realised, forecasts)
    res: dict[str, Any] = dict(btlib.evaluate(hits, confidence).as_dict())
    res.update(method=method, window=window,
               exception_labels=[labels[window + 1 + int(i)] for i in np.flatnonzero(hits)])
    return res

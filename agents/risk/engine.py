"""``RiskEngine``: the facade the Faust agent feeds with plain wire-format dicts.

Market state (bars, returns, EWMA covariance, latest prices, gas, liquidity,
strategy health) is shared by every portfolio; each portfolio has a
:class:`~agents.risk.book.Book` and a streaming VaR backtest. Nothing here reads
the clock: event time comes from records and from ``advance(watermark_ms)``.
Same input order -> same outputs (no randomness, no dict-order dependence in
results: every mapping in a snapshot is built in sorted key order).

Units: USD; P&L positive = profit; VaR/ES positive = loss; returns per bar.
See :mod:`agents.risk.var` for the quantile rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.risk import rating as ratinglib
from agents.risk import var as varlib
from agents.risk.backtest import StreamingBacktest
from agents.risk.bars import AssetIndex, Bar, BarResampler, ReturnsWindow
from agents.risk.book import GROUPS, Book, concentration
from agents.risk.config import RiskConfig
from agents.risk.errors import RiskInputError
from agents.risk.ewma import EwmaCovariance
from agents.risk.health import StrategyHealth
from agents.risk.market import GasState, LiquidityState
from agents.risk.stress import Scenario, StressInputs, StressMemo, run_all

CONFIDENCES = (0.95, 0.975, 0.99)


@dataclass
class _Cache:
    """Exposure vector and scenario P&L valid for one market version."""

    market_version: int
    n_assets: int
    exposures: np.ndarray
    pnl: np.ndarray


@dataclass
class _Portfolio:
    book: Book
    backtest: StreamingBacktest
    cache: _Cache | None = None


@dataclass
class RiskReport:
    """Numeric result of a full recompute (numpy arrays, not yet JSON)."""

    n_assets: int
    n_scenarios: int
    asset_exposure: np.ndarray
    leg_exposure: np.ndarray
    gross_usd: float
    net_usd: float
    tails: dict[float, varlib.TailStats | None]
    component_leg_99: np.ndarray
    marginal_99: np.ndarray
    parametric: dict[float, tuple[float, float]]
    sigma_usd: float
    cov: np.ndarray
    spread_bps: np.ndarray
    depth_usd: np.ndarray
    lvar_99: float
    max_concentration: float
    hhi: float
    correlation_risk: float
    extra: dict[str, Any] = field(default_factory=dict)

    def var(self, c: float) -> float:
        """Historical VaR at ``c`` (0 when there are no scenarios)."""
        t = self.tails.get(c)
        return t.var_usd if t else 0.0

    def es(self, c: float) -> float:
        """Historical ES at ``c`` (0 when there are no scenarios)."""
        t = self.tails.get(c)
        return t.es_usd if t else 0.0


def correlation_risk(corr: np.ndarray, exposures: np.ndarray) -> float:
    """Exposure-weighted mean off-diagonal correlation, clipped to [0, 1].

    ``sum_{i != j} w_i w_j rho_ij / sum_{i != j} w_i w_j`` with ``w = |e|``; 0 with
    fewer than two exposed assets.
    """
    w = np.abs(exposures)
    total = float(w.sum() ** 2 - (w * w).sum())
    if total <= 0:
        return 0.0
    num = float(w @ corr @ w - (w * w * np.diag(corr)).sum())
    return min(1.0, max(0.0, num / total))


def _finite_or_zero(a: np.ndarray) -> np.ndarray:
    """``a`` with NaN and +-inf replaced by 0 (``np.nan_to_num(a, posinf=0, neginf=0)``)."""
    return np.where(np.isfinite(a), a, 0.0)


def _f(x: float) -> float:
    """Plain float, NaN/inf mapped to 0 so snapshots stay valid JSON."""
    x = float(x)
    return x if math.isfinite(x) else 0.0


class RiskEngine:
    """Pure risk core: feed ticks, positions and stats; ask for snapshots."""

    def __init__(self, config: RiskConfig | None = None,
                 scenarios: list[Scenario] | None = None,
                 backtest_min_scenarios: int = 100) -> None:
        self.config = config or RiskConfig()
        self.scenarios = list(scenarios or [])
        self.backtest_min_scenarios = backtest_min_scenarios
        cfg = self.config
        self.assets = AssetIndex()
        self.bars = BarResampler(cfg.bar_ms, max_empty_bars=cfg.window_bars)
        self.window = ReturnsWindow(self.assets, cfg.window_bars)
        self.ewma = EwmaCovariance(cfg.ewma_lambda)
        self.gas = GasState(cfg.gas_window_ms)
        self.liquidity = LiquidityState(cfg.liquidity_ewma_alpha)
        self.health = StrategyHealth(cfg.health_window_ms, cfg.health_step_ms)
        self.portfolios: dict[str, _Portfolio] = {}
        self._prices = np.full(16, np.nan)
        self._price_ts: dict[str, int] = {}
        self.market_version = 0
        self.watermark_ms: int | None = None
        self.rejected = 0
        self._stress_memo = StressMemo()
        self._liquidity_memo: tuple[Any, int, np.ndarray, np.ndarray] | None = None
        self._ewma_memo: tuple[np.ndarray, float, float] | None = None
        self._holders: dict[int, set[str]] | None = None
        """Asset column -> portfolios with an open leg in it; derived from the books (built on first
        use, then kept current by :meth:`on_position`)."""

    # ---- inputs ----------------------------------------------------------
    def _price_array(self) -> np.ndarray:
        n = len(self.assets)
        if n > self._prices.shape[0]:
            new = np.full(max(n, 2 * self._prices.shape[0]), np.nan)
            new[: self._prices.shape[0]] = self._prices
            self._prices = new
        return self._prices

    def on_tick(self, rec: dict[str, Any]) -> bool:
        """Apply a ``mev.market.ticks`` record; False when a price tick is late.

        Raises :class:`RiskInputError` for malformed records (the agent DLQs them).
        """
        kind = rec.get("kind")
        ts = rec.get("ts_ms")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise RiskInputError("tick: 'ts_ms' must be an int")
        try:
            if kind == "price":
                return self._on_price(rec, ts)
            if kind == "gas":
                gwei = float(rec.get("base_fee_gwei", 0.0)) + float(
                    rec.get("priority_fee_gwei", 0.0))
                if not (gwei >= 0 and math.isfinite(gwei)):
                    raise RiskInputError(f"gas tick: fees must be finite and >= 0, got {gwei}")
                chain = rec.get("chain")
                if not isinstance(chain, str) or not chain:
                    raise RiskInputError("gas tick: 'chain' missing")
                self.gas.add(chain, ts, gwei)
                return True
            if kind == "liquidity":
                if not isinstance(rec.get("asset"), str):
                    raise RiskInputError("liquidity tick: 'asset' missing")
                self.liquidity.add(rec)
                self.market_version += 1
                return True
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RiskInputError):
                raise
            raise RiskInputError(f"tick: bad field value: {exc}") from exc
        raise RiskInputError(f"tick: unknown kind {kind!r}")

    def _on_price(self, rec: dict[str, Any], ts: int) -> bool:
        asset = rec.get("asset")
        if not isinstance(asset, str) or not asset:
            raise RiskInputError("price tick: 'asset' missing")
        price = float(rec.get("price_usd", float("nan")))
        if not self.bars.add(asset, ts, price):
            return False
        col = self.assets.intern(asset)
        prices = self._price_array()
        if ts >= self._price_ts.get(asset, -(2**62)):
            self._price_ts[asset] = ts
            prices[col] = price
            self.market_version += 1
        return True

    def _portfolio(self, name: str, create: bool = True) -> _Portfolio:
        """The portfolio's state; reads of an unknown portfolio get an unregistered empty one."""
        pf = self.portfolios.get(name)
        if pf is None:
            cfg = self.config
            pf = _Portfolio(Book(self.assets, cfg.kind_weights),
                            StreamingBacktest(cfg.backtest_confidence, cfg.backtest_history,
                                              cfg.backtest_window))
            if create:
                self.portfolios[name] = pf
        return pf

    def on_position(self, rec: dict[str, Any]) -> bool:
        """Apply a ``mev.positions`` record; False when stale/duplicate (counted).

        Incremental path: when the portfolio's cached exposure vector and
        scenario P&L are current, they are patched with the change (O(legs x
        scenarios)) instead of recomputed.
        """
        portfolio = rec.get("portfolio")
        if not isinstance(portfolio, str) or not portfolio:
            raise RiskInputError("position record: 'portfolio' missing")
        pf = self._portfolio(portfolio)
        n_before = len(self.assets)
        if not pf.book.apply(rec):
            return False
        self._note_holding(portfolio, pf.book)
        cache = pf.cache
        if cache is not None and cache.market_version == self.market_version \
                and cache.n_assets == n_before == len(self.assets):
            deltas = pf.book.exposure_delta(self._price_array())
            g = self.window.scenarios(cache.n_assets)
            for a, d in deltas.items():
                cache.exposures[a] += d
                if g.shape[0]:
                    cache.pnl += d * g[:, a]
        else:
            pf.cache = None
        return True

    def holders(self, asset: str) -> set[str]:
        """Portfolios with an open leg in ``asset`` (a price move changes their marks and risk)."""
        col = self.assets.get(asset)
        if col is None:
            return set()
        if self._holders is None:
            self._holders = {}
            for name, pf in self.portfolios.items():
                m = pf.book.n_rows
                for a in np.unique(pf.book.leg_asset[:m][pf.book.leg_active[:m]]):
                    self._holders.setdefault(int(a), set()).add(name)
        return self._holders.get(col, set())

    def _note_holding(self, portfolio: str, book: Book) -> None:
        """Keep :meth:`holders` current for the assets the last applied record touched."""
        if self._holders is None:
            return
        m = book.n_rows
        for a in {a for a, _, _ in book.last_delta}:
            held = bool(np.any(book.leg_active[:m] & (book.leg_asset[:m] == a)))
            names = self._holders.setdefault(a, set())
            if held:
                names.add(portfolio)
            else:
                names.discard(portfolio)

    def on_strategy_stats(self, rec: dict[str, Any]) -> None:
        """Apply a ``mev.strategy.stats`` record (raises RiskInputError when malformed)."""
        self.health.add(rec)

    def advance(self, watermark_ms: int) -> list[Bar]:
        """Close bars up to ``watermark_ms``; update returns, EWMA and backtests per bar."""
        self.watermark_ms = max(watermark_ms, self.watermark_ms or watermark_ms)
        closed = self.bars.advance(watermark_ms)
        for bar in closed:
            row = self.window.append(bar.returns)
            self.ewma.update(row)
            self.market_version += 1
            self._backtest_bar(row)
        return closed

    def _backtest_bar(self, row: np.ndarray) -> None:
        simple = np.expm1(row)
        for name in sorted(self.portfolios):
            pf = self.portfolios[name]
            bt = pf.backtest
            if bt.pending_exposures is not None and bt.pending_var is not None:
                e = bt.pending_exposures
                bt.observe(float(e @ simple[: e.shape[0]]))
            if self.window.count >= self.backtest_min_scenarios and len(pf.book):
                e, pnl = self._exposures_and_pnl(pf)
                var, _ = varlib.historical_var_es(pnl, bt.confidence)
                bt.forecast(var, e)
            else:
                bt.forecast(0.0, None)
                bt.pending_var = None

    # ---- computation -------------------------------------------------------
    def _exposures_and_pnl(self, pf: _Portfolio) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.assets)
        cache = pf.cache
        if cache is None or cache.market_version != self.market_version or cache.n_assets != n:
            e = pf.book.asset_exposures(self._price_array())
            g = self.window.scenarios(n)
            cache = _Cache(self.market_version, n, e, g @ e if g.shape[0] else np.zeros(0))
            pf.cache = cache
        return cache.exposures, cache.pnl

    def headline_var(self, portfolio: str, confidence: float = 0.99) -> float:
        """Historical VaR from the incrementally maintained scenario P&L (USD)."""
        pf = self._portfolio(portfolio, create=False)
        _, pnl = self._exposures_and_pnl(pf)
        return varlib.historical_var_es(pnl, confidence)[0] if pnl.size else 0.0

    def _liquidity_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Spread and depth per asset column (read-only; rebuilt when a liquidity tick applied)."""
        per_asset = self.liquidity.figures()
        memo = self._liquidity_memo
        if memo is not None and memo[0] is per_asset and memo[1] == n:
            return memo[2], memo[3]
        spread = np.full(n, self.config.default_spread_bps)
        depth = np.full(n, np.nan)
        for asset, (d, s) in per_asset.items():
            col = self.assets.get(asset)
            if col is not None and col < n:
                depth[col], spread[col] = d, s
        spread.setflags(write=False)
        depth.setflags(write=False)
        self._liquidity_memo = (per_asset, n, spread, depth)
        return spread, depth

    def compute(self, portfolio: str) -> RiskReport:
        """Full numeric recompute for one portfolio (no JSON building)."""
        return self._compute(self._portfolio(portfolio, create=False))

    def _compute(self, pf: _Portfolio) -> RiskReport:
        book = pf.book
        n = len(self.assets)
        prices = self._price_array()
        e, pnl = self._exposures_and_pnl(pf)
        legx = book.leg_exposures(prices)
        leg_asset = book.leg_asset[: book.n_rows]
        g = self.window.scenarios(n)
        tails: dict[float, varlib.TailStats | None] = dict.fromkeys(CONFIDENCES)
        comp = np.zeros(legx.shape[0])
        marginal = np.zeros(n)
        if pnl.size:
            sp = varlib.SortedPnl(pnl)
            tails = {c: sp.tail(c) for c in CONFIDENCES}
            s99 = tails[0.99].scenario  # type: ignore[union-attr]
            comp = varlib.historical_components(g, leg_asset, legx, s99)
            marginal = -g[s99]
        cov = self.ewma.covariance(n)
        sigma = varlib.portfolio_sigma(cov, e)
        parametric = {c: varlib.parametric_var_es(sigma, c) for c in CONFIDENCES}
        spread, depth = self._liquidity_arrays(n)
        var99 = tails[0.99].var_usd if tails[0.99] else 0.0
        lvar = varlib.liquidity_adjusted_var(var99, e, spread, depth)
        leg_abs = np.abs(legx)
        gross = float(leg_abs.sum())
        conc, hhi = concentration(e, gross)
        corr_risk = correlation_risk(self.ewma.correlation(n), e) if n else 0.0
        return RiskReport(n, int(pnl.size), e, legx, gross, float(legx.sum()), tails, comp,
                          marginal, parametric, sigma, cov, spread, depth, lvar, conc, hhi,
                          corr_risk)

    def _stress(self, pf: _Portfolio, rep: RiskReport) -> tuple[dict[str, Any], str | None]:
        book = pf.book
        m = book.n_rows
        inp = StressInputs(
            asset_names=self.assets.names[: rep.n_assets], asset_exposure=rep.asset_exposure,
            leg_asset=book.leg_asset[:m], leg_exposure=rep.leg_exposure,
            leg_slot=book.leg_slot[:m], leg_active=book.leg_active[:m], leg_kind=[],
            slot_ids=book.slot_ids, cov=rep.cov, spread_bps=rep.spread_bps,
            depth_usd=rep.depth_usd, gross_usd=rep.gross_usd,
            stablecoins=self.config.stablecoins, gas_cost_share=self.config.gas_cost_share,
            leg_kind_code=book.leg_group["kind"][:m], kind_names=tuple(book.codes["kind"].names),
            memo=self._stress_memo)
        return run_all(self.scenarios, inp)

    # ---- outputs -------------------------------------------------------------
    def snapshot(self, portfolio: str, ts_ms: int, include_positions: bool = True) -> dict[str, Any]:
        """JSON-serialisable risk snapshot of ``portfolio`` at event time ``ts_ms``.

        All money in USD; VaR/ES positive = loss, 1 bar horizon unless named
        ``*_horizon_*``. ``exposure_by_asset`` is net signed, the other
        groupings gross. ``component_var_99`` maps position_id -> Euler
        component of ``var_99_usd`` (sums to it); ``marginal_var_99`` maps asset
        -> USD of VaR99 per USD of exposure. ``volatility`` = portfolio P&L
        stdev (EWMA) / gross, scaled to ``vol_horizon()`` bars (one day by
        default); ``correlation_risk`` = exposure-weighted mean pairwise EWMA
        correlation clipped to [0, 1]. ``stress`` and ``backtest``: see
        :mod:`agents.risk.stress` and :mod:`agents.risk.backtest`.
        """
        pf = self._portfolio(portfolio, create=False)
        book = pf.book
        rep = self._compute(pf)
        names = self.assets.names
        leg_abs = np.abs(rep.leg_exposure)
        gross = rep.gross_usd
        var95, var99 = rep.var(0.95), rep.var(0.99)
        # The rating reads the larger of historical and EWMA-parametric VaR, so a sudden
        # regime change (flash crash) shows within bars, not after 5 % of the window.
        rating, score, reasons = ratinglib.rate(
            max(var95, rep.parametric[0.95][0]), max(var99, rep.parametric[0.99][0]), gross,
            rep.max_concentration, rep.correlation_risk, self.config.rating)
        stress, worst = self._stress(pf, rep)
        slot_exposure = book.per_slot(rep.leg_exposure)
        slot_comp = book.per_slot(rep.component_leg_99)
        held = np.flatnonzero(np.bincount(book.leg_asset[: book.n_rows],
                                          weights=book.leg_active[: book.n_rows].astype(float),
                                          minlength=rep.n_assets))
        vol_bar = rep.sigma_usd / gross if gross > 0 else 0.0
        snap: dict[str, Any] = {
            "portfolio": portfolio,
            "ts_ms": int(ts_ms),
            "total_exposure_usd": _f(gross),
            "net_exposure_usd": _f(rep.net_usd),
            "risk_weighted_exposure_usd": _f(book.risk_weighted_exposure(leg_abs)),
            "active_positions": len(book),
            "exposure_by_asset": {names[i]: _f(rep.asset_exposure[i]) for i in held},
            **{f"exposure_by_{g}": dict(sorted(book.group_exposures(g, leg_abs).items()))
               for g in GROUPS},
            "max_concentration": _f(rep.max_concentration),
            "hhi": _f(rep.hhi),
            "var_95_usd": _f(var95),
            "var_99_usd": _f(var99),
            "es_95_usd": _f(rep.es(0.95)),
            "es_975_usd": _f(rep.es(0.975)),
            "es_99_usd": _f(rep.es(0.99)),
            "parametric_var_95_usd": _f(rep.parametric[0.95][0]),
            "parametric_var_99_usd": _f(rep.parametric[0.99][0]),
            "parametric_es_99_usd": _f(rep.parametric[0.99][1]),
            "horizon_bars": self.config.horizon_bars,
            "var_99_horizon_usd": _f(varlib.scale_horizon(var99, self.config.horizon_bars)),
            "liquidity_adjusted_var_99_usd": _f(rep.lvar_99),
            "var_to_exposure": _f(var95 / gross) if gross > 0 else 0.0,
            "component_var_99": {},
            "marginal_var_99": {names[i]: _f(rep.marginal_99[i]) for i in held},
            "correlation_risk": _f(rep.correlation_risk),
            "volatility": _f(vol_bar * math.sqrt(self.config.vol_horizon())),
            "volatility_per_bar": _f(vol_bar),
            "n_scenarios": rep.n_scenarios,
            "stress": stress,
            "worst_stress_scenario": worst,
            "rating": rating.value,
            "rating_score": _f(score),
            "rating_reasons": reasons,
            "backtest": pf.backtest.result().as_dict(),
            "market": self.market_summary(),
            "positions_stale": book.stale,
            "positions_duplicate": book.duplicates,
            "late_ticks": self.bars.late_ticks,
        }
        comp_list = _finite_or_zero(slot_comp).tolist()
        exp_list = _finite_or_zero(slot_exposure).tolist()
        ordered = [book.positions[pid] for pid in sorted(book.positions)]
        snap["component_var_99"] = {pos.pid: comp_list[pos.slot] for pos in ordered}
        snap["positions"] = ([self._position_row(pos, exp_list[pos.slot], comp_list[pos.slot],
                                                 gross) for pos in ordered]
                             if include_positions else [])
        return snap

    def _position_row(self, pos: Any, exposure: float, risk: float,
                      gross: float) -> dict[str, Any]:
        """Seed REST fields of one position: ``risk_percentage`` = component VaR99 / gross, a fraction
        as in the seed (0.05 = 5 %); ``risk_percent`` the same x 100."""
        fraction = risk / gross if gross > 0 else 0.0
        pct = 100.0 * fraction
        cfg = self.config
        level = ("HIGH" if pct > cfg.position_risk_high_pct else
                 "MEDIUM" if pct > cfg.position_risk_medium_pct else "LOW")
        return {"id": pos.pid, "type": pos.kind, "kind": pos.kind, "strategy": pos.strategy,
                "asset": pos.asset, "chain": pos.chain, "protocol": pos.protocol,
                "exposure_usd": exposure, "risk_amount_usd": risk,
                "risk_percentage": fraction, "risk_percent": pct, "risk_level": level, "confidence": 0.99}

    def firm(self, snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The firm view of these portfolio snapshots over this engine's current scenarios
        (:func:`agents.risk.firm.firm_overview`; the market window is the same on every worker)."""
        from agents.risk.firm import firm_overview

        n = len(self.assets)
        columns = {name: i for i, name in enumerate(self.assets.names[:n])}
        correlation = self.ewma.correlation(n) if n else np.zeros((0, 0))
        return firm_overview(snapshots, columns, self.window.scenarios(n), correlation, self.config.rating)

    def market_summary(self) -> dict[str, Any]:
        """Gas per chain (gwei mean/p95/max), market volatility, liquidity ratio and market
        ``correlation``: the mean pairwise EWMA correlation of the assets' returns (0 below 2 assets)."""
        n = len(self.assets)
        volatility, correlation = self._market_ewma(n)
        return {"gas_gwei": self.gas.stats(),
                "volatility": volatility,
                "liquidity_ratio": _f(self.liquidity.liquidity_ratio()),
                "correlation": correlation,
                "bars": self.window.bars_seen, "assets": n}

    def _market_ewma(self, n: int) -> tuple[float, float]:
        """Market volatility and mean pairwise correlation, once per covariance matrix (per bar)."""
        cov = self.ewma.covariance(n)
        memo = self._ewma_memo
        if memo is not None and memo[0] is cov:
            return memo[1], memo[2]
        vols = np.sqrt(np.clip(np.diag(cov), 0, None)) if n else np.zeros(0)
        corr = self.ewma.correlation(n) if n > 1 else np.zeros((0, 0))
        pairs = corr[np.triu_indices(n, 1)] if n > 1 else np.zeros(0)
        volatility = (_f(float(vols.mean()) * math.sqrt(self.config.vol_horizon()))
                      if vols.size else 0.0)
        correlation = _f(float(pairs.mean())) if pairs.size else 0.0
        self._ewma_memo = (cov, volatility, correlation)
        return volatility, correlation

    def strategy_health(self, strategy: str, now_ms: int | None = None) -> dict[str, Any]:
        """Health figures of ``strategy`` over the hopping window at ``now_ms``
        (default: the watermark)."""
        now = now_ms if now_ms is not None else (self.watermark_ms or 0)
        return self.health.health(strategy, now)

"""Risk reads: overview, positions, VaR, stress tests, predictions, VaR backtest, strategies.

Each answers from the latest snapshot of ``?portfolio=`` (default: the first in sorted order),
this worker's or another worker's (read back from ``risk.snapshots``); 404 until one exists.
"""

from __future__ import annotations

from aiohttp import web

from streams.api import shape
from streams.api.auth import Principal, Role
from streams.api.common import ApiError, Route, json_response
from streams.api.hub import history_point
from streams.api.state import ApiState

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/risk/overview", "overview", Role.VIEWER),
    Route("GET", "/api/v1/risk/positions", "positions", Role.VIEWER),
    Route("GET", "/api/v1/risk/var", "var", Role.VIEWER),
    Route("GET", "/api/v1/stress-tests", "stress_tests", Role.VIEWER),
    Route("GET", "/api/v1/predictions", "predictions", Role.VIEWER),
    Route("GET", "/api/v1/backtest", "backtest", Role.VIEWER),
    Route("GET", "/api/v1/strategies", "strategies", Role.VIEWER),
)


class RiskViews:
    def __init__(self, state: ApiState) -> None:
        self.state = state

    async def overview(self, request: web.Request, who: Principal) -> web.StreamResponse:
        """One portfolio with ``?portfolio=``; else the firm (every portfolio aggregated)."""
        if not request.query.get("portfolio"):
            return await self.firm_overview()
        snap, portfolios = self.state.pick(request)
        return json_response(shape.overview(snap, portfolios, self.state.unresolved(),
                                            self.state.unresolved(snap.get("portfolio"))))

    async def positions(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self.state.pick(request)
        return json_response(shape.positions(snap, portfolios))

    async def var(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self.state.pick(request)
        history = self.state.hub.history(str(snap.get("portfolio")))
        if not history or history[-1]["ts_ms"] < snap.get("ts_ms", 0):
            history = [*history, history_point(snap)]
        return json_response(shape.var(snap, portfolios, history))

    async def stress_tests(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self.state.pick(request)
        return json_response(shape.stress(snap, portfolios))

    async def predictions(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, _ = self.state.pick(request)
        body = shape.predictions(snap)
        if body is None:
            raise ApiError(404, f"no anomaly scores for portfolio {snap.get('portfolio')!r}: the anomaly "
                                "scorer is not enabled on this worker or has not scored it yet")
        return json_response(body)

    async def backtest(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snapshots = self.state.snapshots()
        wanted = request.query.get("portfolio")
        rows = {name: {**(s.get("backtest") or {}), "var_99_usd": s.get("var_99_usd", 0.0),
                       "ts_ms": s.get("ts_ms", 0)}
                for name, s in sorted(snapshots.items()) if s.get("backtest") and wanted in (None, name)}
        if not rows:
            raise ApiError(404, "no VaR backtest yet" + (f" for portfolio {wanted!r}" if wanted else ""))
        wm = self.state.watermark()
        return json_response({"portfolios": rows, "timestamp": shape.rfc3339(wm), "ts_ms": wm})

    async def strategies(self, request: web.Request, who: Principal) -> web.StreamResponse:
        self.state.require_pipeline()
        wm = self.state.watermark()
        rows = self.state.host.strategy_rows()
        if not rows:
            raise ApiError(404, "no strategy statistics yet")
        return json_response({"strategies": rows, "timestamp": shape.rfc3339(wm), "ts_ms": wm})

    async def firm_overview(self) -> web.StreamResponse:
        snapshots = self.state.snapshots()
        if not snapshots:
            raise ApiError(404, "no risk snapshot yet: no positions have been processed")
        self.state.require_pipeline()  # the firm's VaR is read over this worker's market scenarios
        firm = self.state.host.firm_risk(snapshots)
        rows = self.state.alert_rows()
        unresolved = [r.get("portfolio") for r in rows if r["state"] != "resolved"]
        by_portfolio = {name: unresolved.count(name) for name in snapshots}
        return json_response(shape.firm_overview(firm, snapshots, len(unresolved), by_portfolio))

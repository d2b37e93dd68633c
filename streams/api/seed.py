"""The seed dashboard's unversioned API, a thin alias layer over the v1 reads: ``/api/risk-overview``,
``/api/positions``, ``/api/alerts``, ``/api/var-data``, ``/api/stress-tests`` with the seed's field
names and units (``streams.api.seed_shape``). Viewer role, like the v1 reads; ``?portfolio=`` as
in v1 (default: the first in sorted order). Before any snapshot they answer ``{"status": "no_data"}``
(200), as the seed did."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streams.api import common, seed_shape, shape
from streams.api.auth import Principal, Role
from streams.api.common import MAX_LIMIT, ApiError, Route, json_response
from streams.api.hub import history_point
from streams.api.state import ApiState

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/risk-overview", "seed_risk_overview", Role.VIEWER),
    Route("GET", "/api/positions", "seed_positions", Role.VIEWER),
    Route("GET", "/api/alerts", "seed_alerts", Role.VIEWER),
    Route("GET", "/api/var-data", "seed_var_data", Role.VIEWER),
    Route("GET", "/api/stress-tests", "seed_stress_tests", Role.VIEWER),
)


class SeedViews:
    def __init__(self, state: ApiState) -> None:
        self.state = state

    def _snapshot(self, request: web.Request) -> dict[str, Any] | None:
        """The snapshot of ``?portfolio=``; None before any snapshot (the seed's ``no_data``)."""
        if not self.state.snapshots():
            return None
        return self.state.pick(request)[0]

    def _history(self, snap: dict[str, Any]) -> list[dict[str, Any]]:
        history = self.state.hub.history(str(snap.get("portfolio")))
        if not history or history[-1]["ts_ms"] < snap.get("ts_ms", 0):
            history = [*history, history_point(snap)]
        return history

    async def seed_risk_overview(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap = self._snapshot(request)
        if snap is None:
            return json_response(seed_shape.NO_DATA)
        return json_response(seed_shape.risk_overview(snap, self.state.unresolved(), self._history(snap)))

    async def seed_positions(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap = self._snapshot(request)
        return json_response(seed_shape.NO_DATA if snap is None else seed_shape.positions(snap))

    async def seed_alerts(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        limit = common.int_param(q.get("limit"), "limit", seed_shape.DEFAULT_ALERTS, 1, MAX_LIMIT)
        severity = q.get("severity") or None
        rows = shape.filter_alerts(self.state.alert_rows(), severity=severity, state=None,
                                   portfolio=q.get("portfolio") or None,
                                   unresolved_only=common.flag(q.get("unresolved_only"), "unresolved_only"),
                                   limit=MAX_LIMIT)
        return json_response(seed_shape.alerts(rows, limit))

    async def seed_var_data(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap = self._snapshot(request)
        if snap is None:
            return json_response(seed_shape.NO_DATA)
        return json_response(seed_shape.var_data(snap, self._history(snap)))

    async def seed_stress_tests(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap = self._snapshot(request)
        if snap is None:
            return json_response(seed_shape.NO_DATA)
        body = seed_shape.stress_tests(snap, self.state.host.scenario_descriptions())
        wanted = request.query.get("scenario")
        if wanted:
            name = seed_shape.SEED_SCENARIO_NAMES.get(seed_shape.scenario_name(wanted), wanted)
            if name not in body["scenarios"]:
                raise ApiError(404, f"no stress scenario {wanted!r}", scenarios=sorted(body["scenarios"]))
            body["scenarios"] = {name: body["scenarios"][name]}
        return json_response(body)

"""Alerts: list, acknowledge or resolve (forwarded to the worker that holds the alert), the
notification deliveries of every worker, and the alert rules (list, reload on every worker)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from agents.alerts.errors import AlertNotFoundError, RuleError
from agents.alerts.rules import parse_rules, read_rules_document
from agents.alerts.summary import summarize_states
from streams.api import common, shape
from streams.api.auth import Principal, Role
from streams.api.common import MAX_LIMIT, MAX_TS_MS, ApiError, Route, json_response, str_field
from streams.api.peers import FORWARDED, Peers
from streams.api.state import ApiState

log = logging.getLogger(__name__)

DELIVERY_OUTCOMES = ("delivered", "failed", "gave_up")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/alerts", "list_alerts", Role.VIEWER),
    Route("POST", "/api/v1/alerts", "act_on_alert", Role.OPERATOR),
    Route("GET", "/api/v1/alerts/summary", "alerts_summary", Role.VIEWER),
    Route("GET", "/api/v1/deliveries", "list_deliveries", Role.VIEWER),
    Route("GET", "/api/v1/rules", "list_rules", Role.VIEWER),
    Route("POST", "/api/v1/rules/reload", "reload_rules", Role.ADMIN),
)


class AlertViews:
    def __init__(self, state: ApiState, peers: Peers, rules_path: Path) -> None:
        self.state, self.peers, self.rules_path = state, peers, rules_path

    async def list_alerts(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        severity, state, portfolio = q.get("severity") or None, q.get("state") or None, q.get("portfolio")
        if state and state not in shape.ALERT_STATES:
            raise ApiError(400, f"state must be one of {', '.join(shape.ALERT_STATES)}")
        unresolved_only = common.flag(q.get("unresolved_only"), "unresolved_only")
        limit = common.int_param(q.get("limit"), "limit", 50, 1, MAX_LIMIT)
        rows = shape.filter_alerts(self.state.alert_rows(), severity=severity, state=state,
                                   portfolio=portfolio or None, unresolved_only=unresolved_only,
                                   limit=limit)
        return json_response({"alerts": rows, "total_alerts": len(rows),
                              "filters": {"severity": severity, "state": state, "portfolio": portfolio,
                                          "unresolved_only": unresolved_only, "limit": limit},
                              "timestamp": shape.rfc3339(self.state.watermark())})

    async def alerts_summary(self, request: web.Request, who: Principal) -> web.StreamResponse:
        """Counts by severity, rule and state, MTTA and MTTR (``agents.alerts.summary``) of the
        alerts that started firing in ``[start_ms, end_ms)`` (event time; default: all known)."""
        q = request.query
        start = common.int_param(q.get("start_ms"), "start_ms", -1, 0, MAX_TS_MS)
        end = common.int_param(q.get("end_ms"), "end_ms", -1, 0, MAX_TS_MS)
        portfolio = q.get("portfolio") or None
        rows = [r for r in self.state.alert_rows() if portfolio is None or r.get("portfolio") == portfolio]
        body = summarize_states(rows, None if start < 0 else start, None if end < 0 else end)
        wm = self.state.watermark()
        return json_response({**body, "filters": {"start_ms": None if start < 0 else start,
                                                  "end_ms": None if end < 0 else end, "portfolio": portfolio},
                              "timestamp": shape.rfc3339(wm), "ts_ms": wm})

    async def act_on_alert(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await common.json_body(request, self.state.settings.max_body_bytes)
        alert_id = str_field(body, "alert_id", max_len=128)
        action = body.get("action")
        if action not in ("acknowledge", "resolve"):
            raise ApiError(400, "field 'action' must be 'acknowledge' or 'resolve'")
        comment = str_field(body, "comment", required=False)
        host = self.state.host

        def change(pipeline: Any) -> list[Any]:
            if host.holds_foreign_alert(alert_id):
                raise AlertNotFoundError(f"alert {alert_id!r} belongs to a partition another worker owns")
            fn = pipeline.acknowledge if action == "acknowledge" else pipeline.resolve
            return fn(alert_id, who.name, comment)

        try:
            outputs = await self.state.apply(change)
        except AlertNotFoundError as e:
            # owned by another worker (its partition), or unknown: the owner answers, else 404
            forwarded = await self.peers.forward(request, body)
            if forwarded is not None:
                return forwarded
            raise ApiError(404, str(e)) from None
        log.info("alert %s %s by %s", alert_id, action, who.name)
        done = "acknowledged" if action == "acknowledge" else "resolved"
        changed = any(t == "risk.alerts" for t, _, _ in outputs)
        message = f"alert {alert_id} {done}" if changed else f"alert {alert_id} was already {done}"
        return json_response({"message": message, "alert_id": alert_id, "action": action, "actor": who.name})

    async def list_deliveries(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        channel, outcome = q.get("channel") or None, q.get("outcome") or None
        if outcome and outcome not in DELIVERY_OUTCOMES:
            raise ApiError(400, f"outcome must be one of {', '.join(DELIVERY_OUTCOMES)}")
        alert_id, fingerprint = q.get("alert_id") or None, q.get("fingerprint") or None
        limit = common.int_param(q.get("limit"), "limit", 50, 1, MAX_LIMIT)
        rows = shape.filter_deliveries(self.state.hub.deliveries, channel=channel, outcome=outcome,
                                       alert_id=alert_id, fingerprint=fingerprint, limit=limit)
        return json_response({"deliveries": rows, "total": len(rows),
                              "filters": {"channel": channel, "outcome": outcome, "alert_id": alert_id,
                                          "fingerprint": fingerprint, "limit": limit},
                              "ts_ms": self.state.watermark()})

    async def list_rules(self, request: web.Request, who: Principal) -> web.StreamResponse:
        self.state.require_pipeline()
        view = self.state.host.rules_view()
        rows = [shape.rule_row(r, view.errors, view.last_error) for r in view.rules]
        return json_response({"rules": rows, "total": len(rows), "source": view.source,
                              "inhibit_rules": view.inhibit_rules})

    async def reload_rules(self, request: web.Request, who: Principal) -> web.StreamResponse:
        """Reload here, then on every other worker (each owns its alerts); the leader audits it."""
        def read() -> tuple[Any, Any]:
            document = read_rules_document(self.rules_path)
            return document, parse_rules(document, str(self.rules_path))

        try:
            document, ruleset = await asyncio.get_running_loop().run_in_executor(None, read)
        except RuleError as e:
            problems = [p for p in str(e).splitlines() if p.strip()]
            raise ApiError(400, "the rules file is invalid; the current rules stay in force",
                           problems=problems) from None

        def change(pipeline: Any) -> list[Any]:
            out: list[Any] = list(pipeline.reload_rules(ruleset, who.name, document))
            result.update(pipeline.last_reload)
            return out

        result: dict[str, Any] = {}
        outputs = await self.state.apply(change)
        resolved = sum(1 for t, _, _ in outputs if t == "risk.alerts")
        log.info("rules reloaded from %s by %s", ruleset.source, who.name)
        if not request.headers.get(FORWARDED):
            result["workers"] = 1 + await self.peers.broadcast(request)
        return json_response({"message": f"{len(ruleset)} rules loaded from {ruleset.source}",
                              "rules": len(ruleset), "alerts_resolved": resolved, **result})

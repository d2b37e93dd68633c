"""``GET /api/v1/health``: the seed's services and metrics, and what an operator needs to see
whether the worker keeps up (watermark, sources, rule errors, models, stream, peers, crashed
components: 503 when one died and the worker is stopping for a restart)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from streams import supervision
from streams.api import shape
from streams.api.auth import Principal, Role
from streams.api.common import ApiError, Route, json_response
from streams.api.state import ApiState

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/health", "health", Role.VIEWER),
    Route("GET", "/api/v1/models", "models", Role.VIEWER),
)


class HealthViews:
    def __init__(self, state: ApiState, peers: Callable[[], list[str]]) -> None:
        self.state, self.peers = state, peers

    def _services(self, rule_errors: dict[str, Any], stale: list[str], sources: list[Any],
                  model_status: dict[str, Any] | None, scored: list[Any]) -> dict[str, str]:
        ml = "not_configured" if model_status is None and not scored else ("up" if scored else "no_data")
        return {
            "risk_engine": "up" if self.state.host.local_snapshots() else "no_data",
            "alert_manager": "degraded" if rule_errors else "up",
            "ml_predictor": ml,
            "data_pipeline": "no_data" if not sources else ("degraded" if stale else "up"),
        }

    async def models(self, request: web.Request, who: Principal) -> web.StreamResponse:
        """The online models of this worker: samples, warm-up, recent anomaly rate, risk-level
        distribution, forecast skill and the risk-level classifier's feature importance."""
        self.state.require_pipeline()
        status = self.state.host.model_status()
        if status is None:
            raise ApiError(404, "no online models run on this worker")
        return json_response({"ts_ms": self.state.watermark(), **status})

    async def health(self, request: web.Request, who: Principal) -> web.StreamResponse:
        self.state.require_pipeline()
        host, hub = self.state.host, self.state.hub
        wm = self.state.watermark()
        sources = host.sources()
        stale = [s["name"] for s in sources if s["status"] != "ACTIVE"]
        rules = host.rules_view()
        rule_errors = {r: {"count": n, "last_error": rules.last_error.get(r)}
                       for r, n in sorted(rules.errors.items())}
        snapshots = self.state.snapshots()
        model_status = host.model_status()
        scored = [s["anomaly"] for s in snapshots.values() if isinstance(s.get("anomaly"), dict)]
        active = sum(1 for r in self.state.alert_rows() if r["state"] != "resolved")
        services = self._services(rule_errors, stale, sources, model_status, scored)
        recovering = self.state.recovering()
        body: dict[str, Any] = {
            "status": "recovering" if recovering else (
                "degraded" if "degraded" in services.values() else "ok"),
            "recovering": recovering,
            "timestamp": shape.rfc3339(wm), "ts_ms": wm, "watermark_ms": wm,
            "services": services,
            "metrics": {"total_predictions": (model_status or {}).get("total_predictions", len(scored)),
                        "active_alerts": active,
                        "models_loaded": (model_status or {}).get("models_loaded", 0),
                        "alert_rules": len(rules.rules)},
            "pipeline": host.pipeline_stats(),
            "sources": sources, "stale_sources": stale,
            "rule_errors": rule_errors,
            "alert_engine": {"evaluations": rules.evaluations, "late_dropped": rules.late_dropped,
                             "rules_source": rules.source},
            "portfolios": {"local": sorted(host.local_snapshots()), "all": sorted(snapshots)},
            "stream": {"subscribers": hub.subscriber_count, "events_published": hub.published},
            "last_input_event_ts_ms": getattr(host, "last_event_ts_ms", None),
            "consumer_lag": getattr(host, "consumer_lag", {}),
            "peers": self.peers(),
        }
        if model_status is not None:
            body["models"] = model_status
        body["components"] = dict(sorted(supervision.COMPONENTS.items()))
        down = supervision.dead()
        if down:  # a crashed agent or task: the worker is stopping for a restart (streams.supervision)
            body.update(status="down", dead=down,
                        errors={name: supervision.ERRORS.get(name) for name in down})
            return json_response(body, status=503)
        return json_response(body)

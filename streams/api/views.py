"""The REST API and dashboard handlers (plain aiohttp handlers, wired to Faust in ``__init__``).

Every route goes through :meth:`ApiService.guard`: rate limit, bearer token, role, body
size, JSON errors. Handlers read the worker's pipeline and the hub; mutations run on
the pipeline under the host's lock and publish what it returns (alert events, controls
and audit records, each audit record carrying the actor).

Several workers: an acknowledge/resolve of an alert this worker does not hold is
forwarded over HTTP to the other workers of the group (the caller's ``Authorization``
goes along, so the owner checks the same role and audits the same actor); silences
added or expired on any worker reach every worker through ``risk.audit``
(:mod:`streams.api.follow`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from agents.alerts.controls import COMMANDS
from agents.alerts.errors import AlertNotFoundError, AlertsError, RuleError
from agents.alerts.rules import parse_rules, read_rules_document
from agents.pipeline import GLOBAL_CHAIN
from streams import supervision
from streams.api import shape
from streams.api.auth import ANONYMOUS, Principal, RateLimiter, Role, TokenStore
from streams.api.config import ApiSettings
from streams.api.follow import SilenceFollower
from streams.api.hub import CLOSE, EventHub

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
ASSET_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
JSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
MAX_LIMIT = 1_000
FORWARDED = "X-MevRisk-Forwarded-By"
"""Set on a request one worker forwards to another: the receiver answers it locally."""
FORWARD_TIMEOUT_SECS = 10.0
DELIVERY_OUTCOMES = ("delivered", "failed", "gave_up")

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An expected failure: becomes a JSON ``{"error": ...}`` response with ``status``."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status, self.error, self.extra = status, error, extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body, option=JSON_OPTS), status=status,
                        content_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 **(headers or {})})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str
    role: Role | None
    """Least role needed; None: open (dashboard assets, OpenAPI document)."""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "dashboard", None),
    Route("GET", "/dashboard/{name}", "asset", None),
    Route("GET", "/api/v1/openapi.json", "openapi", None),
    Route("GET", "/api/v1/whoami", "whoami", Role.VIEWER),
    Route("GET", "/api/v1/risk/overview", "overview", Role.VIEWER),
    Route("GET", "/api/v1/risk/positions", "positions", Role.VIEWER),
    Route("GET", "/api/v1/risk/var", "var", Role.VIEWER),
    Route("GET", "/api/v1/stress-tests", "stress_tests", Role.VIEWER),
    Route("GET", "/api/v1/predictions", "predictions", Role.VIEWER),
    Route("GET", "/api/v1/health", "health", Role.VIEWER),
    Route("GET", "/api/v1/alerts", "list_alerts", Role.VIEWER),
    Route("POST", "/api/v1/alerts", "act_on_alert", Role.OPERATOR),
    Route("GET", "/api/v1/silences", "list_silences", Role.VIEWER),
    Route("POST", "/api/v1/silences", "add_silence", Role.OPERATOR),
    Route("DELETE", "/api/v1/silences/{silence_id}", "delete_silence", Role.OPERATOR),
    Route("GET", "/api/v1/deliveries", "list_deliveries", Role.VIEWER),
    Route("GET", "/api/v1/controls", "list_controls", Role.VIEWER),
    Route("POST", "/api/v1/controls", "command", Role.ADMIN),
    Route("GET", "/api/v1/rules", "list_rules", Role.VIEWER),
    Route("POST", "/api/v1/rules/reload", "reload_rules", Role.ADMIN),
    Route("GET", "/api/v1/backtest", "backtest", Role.VIEWER),
    Route("GET", "/api/v1/strategies", "strategies", Role.VIEWER),
    Route("GET", "/api/v1/stream", "stream", Role.VIEWER),
    # last: JSON 404 for any other path (or method) under /api/v1
    *(Route(m, "/api/v1/{tail:.*}", "not_found", None) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")),
)


def _flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, f"query parameter {name!r} must be true or false")


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer") from None
    if not low <= n <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return n


MAX_TS_MS = 2**53
MAX_SILENCE_SECS = 366 * 86_400


def _silence_window(body: dict[str, Any], now_ms: int) -> tuple[int, int]:
    """(starts_ms, ends_ms) from ``starts_ms`` (default: the watermark) and ``ends_ms`` or
    ``duration_secs`` (default one hour); at most a year long."""
    def ms(name: str, default: int) -> int:
        value = body.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_TS_MS:
            raise ApiError(400, f"field {name!r} must be an integer time in ms since the epoch")
        return value

    starts = ms("starts_ms", now_ms)
    if "ends_ms" in body:
        ends = ms("ends_ms", 0)
    else:
        secs = body.get("duration_secs", 3_600)
        if not isinstance(secs, int | float) or isinstance(secs, bool) or not 0 < secs <= MAX_SILENCE_SECS:
            raise ApiError(400, f"field 'duration_secs' must be a number in (0, {MAX_SILENCE_SECS}]")
        ends = starts + int(secs * 1000)
    if not starts < ends <= starts + MAX_SILENCE_SECS * 1000:
        raise ApiError(400, "a silence must end after it starts and last at most 366 days")
    return starts, ends


def _tracked_not_owned(pipeline: Any, key: str) -> bool:
    """Whether this worker tracks the alert (id or fingerprint) of a portfolio or strategy whose
    input partition it does not own (any more): the owner acts on it, not this copy."""
    owns = getattr(pipeline, "owns", None)
    if owns is None:
        return False
    state = next((s for s in pipeline.alerts.alerts() if key in (s.id, s.fingerprint)), None)
    return state is not None and state.scope in ("portfolio", "strategy") and not owns(state.scope,
                                                                                      state.entity_id)


def _str_field(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 2_000) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"field {name!r} must be a non-empty string")
    if len(value) > max_len:
        raise ApiError(400, f"field {name!r} is longer than {max_len} characters")
    return value


class ApiService:
    """The API of one worker. ``host`` needs ``pipeline``, ``_lock`` and ``publish(outputs)``."""

    def __init__(self, host: Any, settings: ApiSettings, tokens: TokenStore, hub: EventHub, *,
                 rules_path: Path, openapi: dict[str, Any] | None = None) -> None:
        self.host, self.settings, self.tokens, self.hub = host, settings, tokens, hub
        self.rules_path = rules_path
        self.limiter = RateLimiter(settings.rate_per_sec, settings.rate_burst)
        self._openapi = openapi
        self._assets: dict[str, tuple[bytes, str]] = {}
        self.peers: Callable[[], list[str]] = list
        """Base URLs of the other workers of the group (set by ``register_views``)."""
        self._session: aiohttp.ClientSession | None = None
        self.follower = SilenceFollower()
        self._pending_audit: list[dict[str, Any]] = []
        self._pending_task: asyncio.Task[None] | None = None
        hub.audit_listeners.append(self.follow_audit)

    # ---- the guard every route goes through ---------------------------------------
    def authenticate(self, request: web.Request, needed: Role | None) -> Principal:
        if needed is None:
            return ANONYMOUS
        header = request.headers.get("Authorization")
        if header is None:
            if needed is Role.VIEWER and self.settings.anonymous_reads:
                return ANONYMOUS
            if len(self.tokens) == 0:
                if needed is Role.VIEWER:
                    return ANONYMOUS
                raise ApiError(403, "no API tokens are configured on this worker, so changes are "
                                    "refused; set MEVRISK_API_TOKENS or MEVRISK_API_TOKENS_FILE")
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "malformed Authorization header: expected 'Bearer <token>'")
        principal = self.tokens.identify(token.strip())
        if principal is None:
            raise ApiError(401, "unknown or revoked token")
        return principal

    async def guard(self, route: Route, request: web.Request) -> web.StreamResponse:
        try:
            try:
                principal = self.authenticate(request, route.role)
            except ApiError as e:
                # failed logins spend the caller address's bucket: no free token guessing
                if e.status == 401 and not self.limiter.allow(f"addr:{request.remote}")[0]:
                    raise ApiError(429, "rate limit exceeded", retry_after_secs=1.0) from None
                raise
            key = principal.name if not principal.anonymous else f"addr:{request.remote}"
            ok, retry = self.limiter.allow(key)
            if not ok:
                raise ApiError(429, "rate limit exceeded", retry_after_secs=round(retry, 3))
            if route.role is not None and not principal.role.allows(route.role):
                raise ApiError(403, f"this needs the {route.role.name.lower()} role; "
                                    f"{principal.name} is {principal.role.name.lower()}")
            if (request.content_length or 0) > self.settings.max_body_bytes:
                raise ApiError(413, f"request body over {self.settings.max_body_bytes} bytes")
            handler: Handler = getattr(self, route.handler)
            return await handler(request, principal)
        except ApiError as e:
            headers = {}
            if e.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="mevrisk"'
            if e.status == 429:
                headers["Retry-After"] = str(max(1, round(e.extra.get("retry_after_secs", 1))))
            return json_response({"error": e.error, **e.extra}, e.status, headers)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return json_response({"error": "internal error (see the worker log)"}, 500)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.content.read(self.settings.max_body_bytes + 1)
        if len(raw) > self.settings.max_body_bytes:
            raise ApiError(413, f"request body over {self.settings.max_body_bytes} bytes")
        try:
            body = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError:
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    # ---- state access ---------------------------------------------------------------
    @property
    def pipeline(self) -> Any:
        pipeline = self.host.pipeline
        if pipeline is None:
            raise ApiError(503, "the risk pipeline is not running yet")
        return pipeline

    def _snapshots(self) -> dict[str, dict[str, Any]]:
        """Latest snapshot per portfolio: this worker's, or a newer one another worker published."""
        merged = dict(self.hub.snapshots)
        pipeline = self.host.pipeline
        for name, snap in (pipeline.latest_snapshots.items() if pipeline is not None else ()):
            other = merged.get(name)
            if other is None or snap.get("ts_ms", 0) >= other.get("ts_ms", 0):
                merged[name] = snap
        return merged

    def _pick(self, request: web.Request) -> tuple[dict[str, Any], list[str]]:
        snapshots = self._snapshots()
        portfolios = sorted(snapshots)
        if not portfolios:
            raise ApiError(404, "no risk snapshot yet: no positions have been processed")
        wanted = request.query.get("portfolio") or portfolios[0]
        if wanted not in snapshots:
            raise ApiError(404, f"no risk snapshot for portfolio {wanted!r}", portfolios=portfolios)
        return snapshots[wanted], portfolios

    def _recovering(self) -> bool:
        ready = getattr(self.host, "ready", None)  # streams.host: an asyncio.Event set after recovery
        return ready is not None and not ready.is_set()

    def _watermark(self) -> int:
        pipeline = self.host.pipeline
        return int(pipeline.watermark_ms) if pipeline is not None else 0

    def _alert_rows(self) -> list[dict[str, Any]]:
        pipeline = self.host.pipeline
        current = pipeline.alerts.views(self._watermark()) if pipeline is not None else []
        return shape.merge_alerts(current, self.hub.alerts.values())

    def _unresolved(self, portfolio: str | None = None) -> int:
        return sum(1 for r in self._alert_rows() if r["state"] != "resolved"
                   and (portfolio is None or r.get("portfolio") == portfolio))

    async def _apply(self, change: Callable[[Any], list[Any]]) -> list[Any]:
        """Run ``change(pipeline)`` under the host lock and publish its outputs."""
        pipeline = self.pipeline
        if self._recovering():
            raise ApiError(503, "the worker is still replaying its inputs after a restart; retry shortly")
        async with self.host._lock:
            outputs = change(pipeline)
            await self.host.publish(outputs)
            flush = getattr(self.host, "flush", None)
            if flush is not None and outputs:
                await flush()  # durable before the caller hears 200
        self.hub.publish(outputs)  # deduped if the host already notified
        return outputs

    async def _at_leader(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        """Global changes (silences, rules reloads) are taken and audited by the leader (the owner
        of input partition 0, which writes the global audit chain); the others follow them from
        ``risk.audit``. None: this worker is the leader, handle it here; else the leader's answer."""
        if getattr(self.pipeline, "leader", True):
            return None
        if request.headers.get(FORWARDED):
            raise ApiError(421, "this worker does not own input partition 0; ask the leader")
        forwarded = await self._forward(request, body, pass_over=421)
        if forwarded is None:
            raise ApiError(503, "no worker owns input partition 0 right now (rebalancing); retry shortly")
        return forwarded

    async def _broadcast(self, request: web.Request) -> int:
        """Send this request to every other worker (marked forwarded, so they act locally only);
        returns how many answered 2xx. A worker that does not answer is logged, not fatal."""
        session, headers = self._peer_call(request)
        done = 0
        for url in self.peers():
            try:
                async with session.request(request.method, url + request.path_qs, headers=headers,
                                                 data=b"{}") as resp:
                    done += 200 <= resp.status < 300
                    if resp.status >= 300:
                        log.warning("%s %s on %s answered %d", request.method, request.path, url, resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s %s on %s failed: %r", request.method, request.path, url, exc)
        return done

    # ---- several workers ---------------------------------------------------------------
    def follow_audit(self, record: dict[str, Any]) -> None:
        """Apply a silence record of ``risk.audit`` (any worker's) to this worker's alert engine
        once this worker's clock has reached the event time it was taken at, as the crash-recovery
        replay does (``schedule_operator``); held back while recovery replays."""
        pipeline = self.host.pipeline
        if pipeline is None or record.get("kind") != "silence":
            return
        if record.get("stream") != GLOBAL_CHAIN:  # where the leader audits silences
            return
        self._pending_audit.append(record)
        self._drain_audit()
        if self._pending_audit and self._pending_task is None:
            self._pending_task = asyncio.get_running_loop().create_task(self._drain_later())

    def _drain_audit(self) -> None:
        pipeline = self.host.pipeline
        if pipeline is None or self._recovering():
            return
        watermark, waiting = pipeline.watermark_ms, []
        for record in self._pending_audit:
            if int(record.get("ts_ms", 0)) <= watermark:
                self.follower.apply(pipeline.alerts, record["payload"])
            else:
                waiting.append(record)
        self._pending_audit = waiting

    async def _drain_later(self) -> None:
        try:
            while self._pending_audit:
                await asyncio.sleep(0.2)
                self._drain_audit()
        finally:
            self._pending_task = None

    async def close(self) -> None:
        self.hub.close_all()
        if self._pending_task is not None:
            self._pending_task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _peer_call(self, request: web.Request) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        """The session and headers to pass ``request`` on to a peer: marked forwarded (the peer
        acts locally only), with the caller's ``Authorization`` (same role, same actor)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECS))
        headers = {"Content-Type": "application/json", FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return self._session, headers

    async def _forward(self, request: web.Request, body: dict[str, Any], pass_over: int = 404
                       ) -> web.Response | None:
        """Ask the other workers, in URL order, to handle this request; the first answer other
        than ``pass_over`` is returned as it is. None: every worker passed (or there is none)."""
        if request.headers.get(FORWARDED):
            return None  # forwarded once already: answered here
        peers = self.peers()
        if not peers:
            return None
        session, headers = self._peer_call(request)
        silent: list[str] = []
        for url in peers:
            try:
                async with session.request(request.method, url + request.path_qs, headers=headers,
                                                 data=orjson.dumps(body)) as resp:
                    if resp.status == pass_over:
                        continue
                    return web.Response(body=await resp.read(), status=resp.status,
                                        content_type=resp.content_type,
                                        headers={"Cache-Control": "no-store", "X-MevRisk-Answered-By": url,
                                                 "X-Content-Type-Options": "nosniff"})
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("forwarding %s %s to %s failed: %r", request.method, request.path, url, exc)
                silent.append(url)
        if silent:
            raise ApiError(503, f"not found on this worker, and {', '.join(silent)} did not answer; "
                                "retry shortly")
        return None

    # ---- dashboard and documents -------------------------------------------------------
    def _asset(self, name: str) -> tuple[bytes, str]:
        if name not in self._assets:
            path = DASHBOARD_DIR / name
            if "/" in name or name.startswith(".") or path.suffix not in ASSET_TYPES or not path.is_file():
                raise ApiError(404, f"no dashboard file {name!r}")
            self._assets[name] = (path.read_bytes(), ASSET_TYPES[path.suffix])
        return self._assets[name]

    def _asset_response(self, name: str) -> web.Response:
        body, ctype = self._asset(name)
        return web.Response(body=body, content_type=ctype, headers={
            "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})

    async def dashboard(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return self._asset_response("index.html")

    async def asset(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return self._asset_response(request.match_info["name"])

    async def openapi(self, request: web.Request, who: Principal) -> web.StreamResponse:
        if self._openapi is None:
            from streams.api.openapi import document

            self._openapi = document()
        return json_response(self._openapi)

    async def not_found(self, request: web.Request, who: Principal) -> web.StreamResponse:
        raise ApiError(404, f"no endpoint {request.method} {request.path}")

    async def whoami(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return json_response({"name": who.name, "role": who.role.name.lower(), "anonymous": who.anonymous,
                              "tokens_configured": len(self.tokens) > 0})

    # ---- risk reads -------------------------------------------------------------------
    async def overview(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self._pick(request)
        return json_response(shape.overview(snap, portfolios, self._unresolved(),
                                            self._unresolved(snap.get("portfolio"))))

    async def positions(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self._pick(request)
        return json_response(shape.positions(snap, portfolios))

    async def var(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self._pick(request)
        history = self.hub.history(str(snap.get("portfolio")))
        if not history or history[-1]["ts_ms"] < snap.get("ts_ms", 0):
            from streams.api.hub import history_point

            history = [*history, history_point(snap)]
        return json_response(shape.var(snap, portfolios, history))

    async def stress_tests(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, portfolios = self._pick(request)
        return json_response(shape.stress(snap, portfolios))

    async def predictions(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snap, _ = self._pick(request)
        body = shape.predictions(snap)
        if body is None:
            raise ApiError(404, f"no anomaly scores for portfolio {snap.get('portfolio')!r}: the anomaly "
                                "scorer is not enabled on this worker or has not scored it yet")
        return json_response(body)

    async def backtest(self, request: web.Request, who: Principal) -> web.StreamResponse:
        snapshots = self._snapshots()
        wanted = request.query.get("portfolio")
        rows = {name: {**(s.get("backtest") or {}), "var_99_usd": s.get("var_99_usd", 0.0),
                       "ts_ms": s.get("ts_ms", 0)}
                for name, s in sorted(snapshots.items()) if s.get("backtest") and wanted in (None, name)}
        if not rows:
            raise ApiError(404, "no VaR backtest yet" + (f" for portfolio {wanted!r}" if wanted else ""))
        return json_response({"portfolios": rows, "timestamp": shape.rfc3339(self._watermark()),
                              "ts_ms": self._watermark()})

    async def strategies(self, request: web.Request, who: Principal) -> web.StreamResponse:
        pipeline = self.pipeline
        wm = self._watermark()
        names = pipeline.risk.health.strategies()
        if not names:
            raise ApiError(404, "no strategy statistics yet")
        ks = pipeline.kill_switch
        rows = [{**pipeline.risk.strategy_health(s, wm), "trading_state": ks.state(f"strategy:{s}").value,
                 "effective_state": ks.effective_state(strategy=s).value} for s in names]
        return json_response({"strategies": rows, "timestamp": shape.rfc3339(wm), "ts_ms": wm})

    async def health(self, request: web.Request, who: Principal) -> web.StreamResponse:
        pipeline = self.pipeline
        wm = self._watermark()
        sources = pipeline.sources()
        stale = [s["name"] for s in sources if s["status"] != "ACTIVE"]
        engine = pipeline.alerts
        rule_errors = {r: {"count": n, "last_error": engine.last_error.get(r)}
                       for r, n in sorted(engine.errors.items())}
        snapshots = self._snapshots()
        models = getattr(pipeline, "models", None)
        model_status = models.status() if models is not None else None
        scored = [s["anomaly"] for s in snapshots.values() if isinstance(s.get("anomaly"), dict)]
        active = sum(1 for r in self._alert_rows() if r["state"] != "resolved")
        ml = "not_configured" if models is None and not scored else ("up" if scored else "no_data")
        services = {
            "risk_engine": "up" if pipeline.latest_snapshots else "no_data",
            "alert_manager": "degraded" if rule_errors else "up",
            "ml_predictor": ml,
            "data_pipeline": "no_data" if not sources else ("degraded" if stale else "up"),
        }
        body: dict[str, Any] = {
            "status": "recovering" if self._recovering() else (
                "degraded" if "degraded" in services.values() else "ok"),
            "recovering": self._recovering(),
            "timestamp": shape.rfc3339(wm), "ts_ms": wm, "watermark_ms": wm,
            "services": services,
            "metrics": {"total_predictions": (model_status or {}).get("total_predictions", len(scored)),
                        "active_alerts": active,
                        "models_loaded": (model_status or {}).get("models_loaded", 0),
                        "alert_rules": len(engine.ruleset)},
            "pipeline": dataclasses.asdict(pipeline.stats),
            "sources": sources, "stale_sources": stale,
            "rule_errors": rule_errors,
            "alert_engine": {"evaluations": engine.evaluations, "late_dropped": engine.late_dropped,
                             "rules_source": engine.ruleset.source},
            "portfolios": {"local": sorted(pipeline.latest_snapshots), "all": sorted(snapshots)},
            "stream": {"subscribers": self.hub.subscriber_count, "events_published": self.hub.published},
            "last_input_event_ts_ms": getattr(self.host, "last_event_ts_ms", None),
            "consumer_lag": getattr(self.host, "consumer_lag", {}),
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

    # ---- alerts ---------------------------------------------------------------------
    async def list_alerts(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        severity, state, portfolio = q.get("severity") or None, q.get("state") or None, q.get("portfolio")
        if state and state not in shape.ALERT_STATES:
            raise ApiError(400, f"state must be one of {', '.join(shape.ALERT_STATES)}")
        unresolved_only = _flag(q.get("unresolved_only"), "unresolved_only")
        limit = _int(q.get("limit"), "limit", 50, 1, MAX_LIMIT)
        rows = shape.filter_alerts(self._alert_rows(), severity=severity, state=state,
                                   portfolio=portfolio or None, unresolved_only=unresolved_only,
                                   limit=limit)
        return json_response({"alerts": rows, "total_alerts": len(rows),
                              "filters": {"severity": severity, "state": state, "portfolio": portfolio,
                                          "unresolved_only": unresolved_only, "limit": limit},
                              "timestamp": shape.rfc3339(self._watermark())})

    async def act_on_alert(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await self._json_body(request)
        alert_id = _str_field(body, "alert_id", max_len=128)
        action = body.get("action")
        if action not in ("acknowledge", "resolve"):
            raise ApiError(400, "field 'action' must be 'acknowledge' or 'resolve'")
        comment = _str_field(body, "comment", required=False)

        def change(pipeline: Any) -> list[Any]:
            if _tracked_not_owned(pipeline, alert_id):
                raise AlertNotFoundError(f"alert {alert_id!r} belongs to a partition another worker owns")
            fn = pipeline.acknowledge if action == "acknowledge" else pipeline.resolve
            return fn(alert_id, who.name, comment)

        try:
            outputs = await self._apply(change)
        except AlertNotFoundError as e:
            # owned by another worker (its partition), or unknown: the owner answers, else 404
            forwarded = await self._forward(request, body)
            if forwarded is not None:
                return forwarded
            raise ApiError(404, str(e)) from None
        log.info("alert %s %s by %s", alert_id, action, who.name)
        done = "acknowledged" if action == "acknowledge" else "resolved"
        changed = any(t == "risk.alerts" for t, _, _ in outputs)
        message = f"alert {alert_id} {done}" if changed else f"alert {alert_id} was already {done}"
        return json_response({"message": message, "alert_id": alert_id, "action": action, "actor": who.name})

    # ---- silences ---------------------------------------------------------------------
    async def list_silences(self, request: web.Request, who: Principal) -> web.StreamResponse:
        wm = self._watermark()
        rows = [{**s.to_dict(), "active": s.active_at(wm), "startsAt": shape.rfc3339(s.starts_ms),
                 "endsAt": shape.rfc3339(s.ends_ms)} for s in self.pipeline.alerts.silences()]
        return json_response({"silences": rows, "total": len(rows), "ts_ms": wm})

    async def add_silence(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await self._json_body(request)
        if not body.get("matchers"):
            raise ApiError(400, "field 'matchers' is required, e.g. {\"alertname\": \"HighVaR95\"}")
        comment = _str_field(body, "comment", required=False)
        starts, ends = _silence_window(body, self._watermark())
        if (answer := await self._at_leader(request, body)) is not None:
            return answer
        result: dict[str, str] = {}

        def change(pipeline: Any) -> list[Any]:
            sid, outputs = pipeline.add_silence(body["matchers"], starts, ends, who.name, comment)
            result["id"] = sid
            return outputs

        try:
            await self._apply(change)
        except AlertsError as e:
            raise ApiError(400, str(e)) from None
        log.info("silence %s added by %s", result["id"], who.name)
        return json_response({"message": f"silence {result['id']} created", "id": result["id"],
                              "starts_ms": starts, "ends_ms": ends}, 201)

    async def delete_silence(self, request: web.Request, who: Principal) -> web.StreamResponse:
        silence_id = request.match_info["silence_id"]
        if (answer := await self._at_leader(request, {})) is not None:
            return answer
        found: list[bool] = []

        def change(pipeline: Any) -> list[Any]:
            outputs = pipeline.delete_silence(silence_id, who.name)
            if outputs:
                found.append(True)
            return outputs

        await self._apply(change)
        if not found:
            raise ApiError(404, f"no silence {silence_id!r}")
        log.info("silence %s deleted by %s", silence_id, who.name)
        return json_response({"message": f"silence {silence_id} expired", "id": silence_id})

    # ---- notification deliveries -------------------------------------------------------
    async def list_deliveries(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        channel, outcome = q.get("channel") or None, q.get("outcome") or None
        if outcome and outcome not in DELIVERY_OUTCOMES:
            raise ApiError(400, f"outcome must be one of {', '.join(DELIVERY_OUTCOMES)}")
        alert_id, fingerprint = q.get("alert_id") or None, q.get("fingerprint") or None
        limit = _int(q.get("limit"), "limit", 50, 1, MAX_LIMIT)
        rows = shape.filter_deliveries(self.hub.deliveries, channel=channel, outcome=outcome,
                                       alert_id=alert_id, fingerprint=fingerprint, limit=limit)
        return json_response({"deliveries": rows, "total": len(rows),
                              "filters": {"channel": channel, "outcome": outcome, "alert_id": alert_id,
                                          "fingerprint": fingerprint, "limit": limit},
                              "ts_ms": self._watermark()})

    # ---- controls ---------------------------------------------------------------------
    async def list_controls(self, request: web.Request, who: Principal) -> web.StreamResponse:
        recent = list(self.hub.controls)[::-1][:50]
        return json_response({"states": self.pipeline.kill_switch.to_dict(), "recent": recent,
                              "commands": list(COMMANDS), "ts_ms": self._watermark()})

    async def command(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await self._json_body(request)
        scope = _str_field(body, "scope", max_len=200)
        command = _str_field(body, "command", max_len=16).upper()
        reason = _str_field(body, "reason")
        if command not in COMMANDS:
            raise ApiError(400, f"field 'command' must be one of {', '.join(COMMANDS)}")
        try:
            outputs = await self._apply(lambda p: p.command(scope, command, who.name, reason))
        except AlertsError as e:
            raise ApiError(400, str(e)) from None
        control = next(v for t, _, v in outputs if t == "risk.controls")
        log.info("control %s %s by %s", command, scope, who.name)
        return json_response({"message": f"{command} sent to {scope}", "control": control})

    # ---- rules --------------------------------------------------------------------------
    async def list_rules(self, request: web.Request, who: Principal) -> web.StreamResponse:
        engine = self.pipeline.alerts
        rows = [shape.rule_row(r, engine.errors, engine.last_error) for r in engine.ruleset.rules]
        return json_response({"rules": rows, "total": len(rows), "source": engine.ruleset.source,
                              "inhibit_rules": len(engine.ruleset.inhibit_rules)})

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
        outputs = await self._apply(change)
        resolved = sum(1 for t, _, _ in outputs if t == "risk.alerts")
        log.info("rules reloaded from %s by %s", ruleset.source, who.name)
        if not request.headers.get(FORWARDED):
            result["workers"] = 1 + await self._broadcast(request)
        return json_response({"message": f"{len(ruleset)} rules loaded from {ruleset.source}",
                              "rules": len(ruleset), "alerts_resolved": resolved, **result})

    # ---- live stream --------------------------------------------------------------------
    async def stream(self, request: web.Request, who: Principal) -> web.StreamResponse:
        if self.hub.subscriber_count >= self.settings.max_stream_clients:
            raise ApiError(503, "too many live streams open on this worker")
        portfolio = request.query.get("portfolio") or None
        kinds = set((request.query.get("types") or "snapshot,alert,control").split(","))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
        sub = self.hub.subscribe()
        try:
            await resp.prepare(request)
            hello = {"portfolios": sorted(self._snapshots()), "ts_ms": self._watermark(),
                     "actor": who.name, "role": who.role.name.lower()}
            await resp.write(b"retry: 3000\n\n" + _sse("hello", hello))
            await self._pump(resp, sub, kinds, portfolio)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away: the normal end of a live page
        finally:
            self.hub.unsubscribe(sub)
        return resp

    async def _pump(self, resp: web.StreamResponse, sub: Any, kinds: set[str], portfolio: str | None) -> None:
        """Write the subscriber's events until the hub closes it or it falls too far behind."""
        while True:
            try:
                kind, value = await asyncio.wait_for(sub.queue.get(), self.settings.stream_keepalive_secs)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if (kind, value) == CLOSE:
                return
            if kind not in kinds:
                continue
            if portfolio and kind == "snapshot" and value.get("portfolio") != portfolio:
                continue
            await resp.write(_sse(kind, value))
            if sub.dropped and sub.queue.empty():
                await resp.write(_sse("overflow", {"error": "client too slow; reconnect"}))
                return


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, option=JSON_OPTS) + b"\n\n"


def build_aiohttp_app(service: ApiService) -> web.Application:
    """A bare aiohttp application with every route (tests; the worker goes through Faust)."""
    app = web.Application()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _bind(service, route))
    app.on_shutdown.append(lambda _app: _close(service))
    return app


async def _close(service: ApiService) -> None:
    await service.close()


def _bind(service: ApiService, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await service.guard(route, request)

    handle.__name__ = route.handler
    return handle

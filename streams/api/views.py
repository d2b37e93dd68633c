"""The REST API and dashboard of one worker: the resource modules put together (plain aiohttp
handlers, wired to Faust in ``__init__``).

Every route goes through :meth:`ApiService.guard` (``streams.api.access``: rate limit, bearer
token, role, body size, JSON errors). Handlers read the worker through the host's narrow read
interface (``streams.host_reads``) and the hub (``streams.api.state``); mutations run on the
pipeline under the host's lock (``HostReads.apply``) and publish what it returns (alert events,
controls and audit records, each audit record carrying the actor).

One module per resource: ``risk``, ``alerts`` (with deliveries and rules), ``silences``,
``controls``, ``health``, ``stream``, ``reports`` (daily report), ``pages`` (dashboard, OpenAPI,
whoami); each lists its ``ROUTES`` and a class holding their handlers.

Several workers (``streams.api.peers``): an acknowledge/resolve of an alert this worker does not
hold, and a control on a scope whose input partition it does not own, are forwarded over HTTP to
the other workers of the group, signed with ``MEVRISK_PEER_SECRET`` for the original actor and
role (never the caller's token), so the owner checks the same role and audits the same actor;
silences added or expired on any worker reach every worker through ``risk.audit`` (:mod:`streams.api.follow`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.api import alerts, controls, health, pages, reports, risk, seed, silences, stream
from streams.api.access import Access, allowed_host_names, host_guard, peer_signer
from streams.api.auth import TokenStore
from streams.api.common import ApiError, Handler, Route, json_response
from streams.api.config import ApiSettings
from streams.api.hub import EventHub
from streams.api.peers import FORWARDED, Peers
from streams.api.state import ApiState

__all__ = ["FORWARDED", "ROUTES", "ApiError", "ApiService", "Route", "build_aiohttp_app", "json_response"]

ROUTES: tuple[Route, ...] = (
    *pages.ROUTES, *risk.ROUTES, *health.ROUTES, *alerts.ROUTES, *silences.ROUTES,
    *controls.ROUTES, *stream.ROUTES, *seed.ROUTES, *reports.ROUTES,
    *pages.CATCH_ALL,  # last: JSON 404 for any other path (or method) under /api/v1
)


class ApiService:
    """The API of one worker. ``host`` is a ``streams.host_reads.HostReads`` (the worker's
    ``PipelineHost``, or a stand-in in tests)."""

    def __init__(self, host: Any, settings: ApiSettings, tokens: TokenStore, hub: EventHub, *,
                 rules_path: Path, openapi: dict[str, Any] | None = None) -> None:
        self.host, self.settings, self.tokens, self.hub = host, settings, tokens, hub
        signer = peer_signer(settings)
        self.access = Access(settings, tokens, signer)
        self.state = ApiState(host, hub, settings)
        self._peers = Peers(self.state, signer)
        self.silences = silences.SilenceViews(self.state, self._peers)
        self.reports = reports.ReportViews(self.access.links)
        resources: list[object] = [
            pages.PageViews(tokens, openapi), risk.RiskViews(self.state),
            health.HealthViews(self.state, lambda: self._peers.urls()),
            alerts.AlertViews(self.state, self._peers, rules_path), self.silences,
            controls.ControlViews(self.state, self._peers), stream.StreamViews(self.state),
            seed.SeedViews(self.state), self.reports,
        ]
        self._handlers: dict[str, Handler] = {}
        for route in ROUTES:
            owner = next(r for r in resources if hasattr(r, route.handler))
            self._handlers[route.handler] = getattr(owner, route.handler)
        hub.audit_listeners.append(self.silences.follow_audit)

    @property
    def peers(self) -> Callable[[], list[str]]:
        """Base URLs of the other workers of the group (set by ``register_views``)."""
        return self._peers.urls

    @peers.setter
    def peers(self, urls: Callable[[], list[str]]) -> None:
        self._peers.urls = urls

    def set_topology(self, own_url: Callable[[], str | None], owner_of: Callable[[int], str | None]) -> None:
        """This worker's base URL as peers address it, and the URL of the owner of input partition N."""
        self.access.own_url = self._peers.own_url = own_url
        self._peers.owner_of = owner_of

    @property
    def limiter(self) -> Any:
        return self.access.limiter

    async def guard(self, route: Route, request: web.Request) -> web.StreamResponse:
        return await self.access.guard(route, request, self._handlers[route.handler])

    async def close(self) -> None:
        self.hub.close_all()
        self.silences.close()
        await self._peers.close()


def build_aiohttp_app(service: ApiService) -> web.Application:
    """A bare aiohttp application with every route (tests; the worker goes through Faust)."""
    allowed = allowed_host_names(None, None, service.settings.allowed_hosts)
    app = web.Application(middlewares=[host_guard(allowed)])
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

"""REST API (``/api/v1``) and dashboard (``/``) served by the Faust web server (issue 7).

Wiring, from ``streams/worker.py``::

    from streams.api import register_views
    register_views(app, streams.host.host)

and, in ``PipelineHost.publish``, hand the live pages what was actually sent (collect the
sent triples in the loop, outputs suppressed by recovery left out)::

    notify_listeners(sent)   # from streams.api.hub import notify_listeners

Mutations answer 503 while ``host.ready`` (if the host has one) is not set.

Auth: bearer tokens with roles viewer < operator < admin from ``MEVRISK_API_TOKENS`` /
``MEVRISK_API_TOKENS_FILE`` (see :mod:`streams.api.config`). Without any token, reads
are open and mutations are refused (403); a worker whose reads are open refuses to start on a
non-loopback bind unless ``MEVRISK_API_ALLOW_OPEN_READS`` is set. ``/``, ``/dashboard/*`` and
``/api/v1/openapi.json`` are always open, ``/metrics`` too unless ``MEVRISK_METRICS_TOKEN`` is
set. Every request of the web server (Faust's own views too) must name an allowed ``Host``
(``MEVRISK_ALLOWED_HOSTS``). CORS is off (no CORS headers are ever sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from streams import kafka_clients, logsafe
from streams.api.access import allowed_host_names, check_exposure, host_guard
from streams.api.auth import ApiConfigError, Role, TokenStore, load_token_mapping
from streams.api.config import ApiSettings, get_api_settings
from streams.api.hub import HUB, EventHub, notify_listeners
from streams.api.views import ROUTES, ApiService, Route, build_aiohttp_app

log = logging.getLogger(__name__)

__all__ = ["HUB", "ApiConfigError", "ApiService", "EventHub", "Role", "TokenStore", "build_aiohttp_app",
           "build_service", "notify_listeners", "register_views"]

_REGISTERED: set[int] = set()
REPLAY_PER_PARTITION = {"risk.snapshots": 300, "risk.alerts": 1_000, "risk.controls": 500,
                        "risk.audit": 5_000}


def build_service(host: Any, settings: ApiSettings | None = None, hub: EventHub | None = None) -> ApiService:
    """The API of one worker, from settings (tokens parsed here: a bad config fails at start)."""
    settings = settings or get_api_settings()
    mapping = load_token_mapping(settings.tokens.get_secret_value(), settings.tokens_file)
    logsafe.register_secrets(str(token) for token in mapping)  # never in a log line
    logsafe.register_secrets(s for s in (settings.peer_secret.get_secret_value(),
                                         settings.metrics_token.get_secret_value()) if s)
    tokens = TokenStore.from_mapping(mapping)
    rules_path = settings.rules_path
    if rules_path is None:
        from streams.settings import get_settings

        rules_path = get_settings().config_dir / "rules.yaml"
    if len(tokens) == 0:
        log.warning("no API tokens configured: reads are open, changes through the API are refused")
    return ApiService(host, settings, tokens, hub or HUB, rules_path=rules_path)


def _view_class(service: ApiService, path: str, routes: list[Route]) -> type:
    from faust.web import View

    def method(route: Route) -> Any:
        async def call(self: Any, request: Any, **_match: Any) -> Any:
            return await service.guard(route, request)

        return call

    attrs = {r.method.lower(): method(r) for r in routes}
    name = "Api" + ("".join(ch for ch in path.title() if ch.isalnum()) or "Root")
    return type(name, (View,), attrs)


def register_views(app: Any, host: Any, settings: ApiSettings | None = None) -> ApiService | None:
    """Add the API and dashboard routes (and the replicated feed) to the Faust ``app``; idempotent."""
    if id(app) in _REGISTERED:
        return None
    _REGISTERED.add(id(app))
    settings = settings or get_api_settings()
    service = build_service(host, settings)
    from streams.settings import get_settings
    from streams.wiring import audit_mac_key

    service.hub.audit_key = audit_mac_key(get_settings())  # silences followed only when signed
    bind = str(app.conf.web_bind or app.conf.web_host)
    check_exposure(settings, service.tokens, [bind])
    allowed = allowed_host_names(bind, str(app.conf.web_host), settings.allowed_hosts)
    app.web.web_app.middlewares.append(host_guard(allowed))
    if service.access.signer is None:
        log.warning("MEVRISK_PEER_SECRET is not set: requests for another worker's alerts, controls or "
                    "global changes are refused (409 naming that worker), not forwarded")
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        view = _view_class(service, path, routes)
        app.page(path, name=f"mevrisk-api:{path}")(view)

    async def _shutdown(_web_app: Any) -> None:
        await service.close()

    app.web.web_app.on_shutdown.append(_shutdown)
    service.peers = lambda: peer_urls(app)
    service.set_topology(lambda: str(app.conf.canonical_url).rstrip("/"), lambda n: partition_owner(app, n))
    if settings.replicate_snapshots:
        app.task(_replicate_outputs(service.hub))
    return service


def peer_urls(app: Any) -> list[str]:
    """Web URLs of the other members of the consumer group, from Faust's partition assignor
    (every member advertises its ``canonical_url``), sorted."""
    try:
        urls = {str(u).rstrip("/") for u in app.router.external_topics_metadata()}
        own = str(app.conf.canonical_url).rstrip("/")
    except Exception as exc:  # no assignment yet (or a custom assignor): nobody to ask
        log.debug("no peer URLs: %r", exc)
        return []
    return sorted(urls - {own})


def partition_owner(app: Any, partition: int) -> str | None:
    """Web URL of the member that owns ``partition`` of the input topics (None: unknown yet)."""
    from streams.topics import POSITIONS

    try:
        for url, topics in app.router.external_topics_metadata().items():
            if partition in topics.get(POSITIONS, ()):
                return str(url).rstrip("/")
    except Exception as exc:  # no assignment yet (or a custom assignor)
        log.debug("no partition owner: %r", exc)
    return None


def _replicate_outputs(hub: EventHub) -> Any:
    async def replicate_risk_outputs() -> None:
        """Read every partition of the output topics (no consumer group) into the hub, so any
        worker answers for any portfolio and streams every portfolio's events; from
        ``risk.audit`` the hub keeps delivery outcomes and follows silences."""
        from streams.settings import get_settings
        from streams.topics import ALERTS, AUDIT, CONTROLS, SNAPSHOTS, contract_topic

        names = (SNAPSHOTS, ALERTS, CONTROLS, AUDIT)
        # no group: aiokafka assigns every partition of the subscribed topics to this consumer
        consumer = kafka_clients.consumer(*names, group_id=None,
                                    bootstrap_servers=get_settings().kafka_bootstrap_servers,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=4_194_304)
        await consumer.start()
        try:
            # ASYNC110: aiokafka has no event for a group-less subscription's assignment, so it is polled
            while {tp.topic for tp in consumer.assignment()} != set(names):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            partitions = sorted(consumer.assignment())
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            for tp in partitions:
                keep = REPLAY_PER_PARTITION[contract_topic(tp.topic)]
                consumer.seek(tp, max(begin[tp], end[tp] - keep))
            import orjson

            async for message in consumer:
                try:
                    value = orjson.loads(message.value)
                except (orjson.JSONDecodeError, TypeError):  # malformed or a tombstone: skipped
                    continue
                if isinstance(value, dict):
                    key = message.key.decode() if message.key else ""
                    hub.publish([(contract_topic(message.topic), key, value)])
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    return replicate_risk_outputs

"""The guard every route goes through: bearer token (or a peer's signature), role, rate limit,
body size, and JSON errors (``ApiError`` becomes ``{"error": ...}`` with its status; anything
else a logged 500); and the checks of the web server as a whole (issue 12, item 6): the ``Host``
header against an allowlist, and no open reads on a non-loopback bind unless allowed.

A request carrying any peer header (``X-MevRisk-Forwarded-By``, ``X-MevRisk-Actor``...) is a
peer request: it is served only if its signature (``streams.api.peer_auth``) verifies, and then
for the actor and role it names; its ``Authorization`` header is ignored. Nothing here logs a
header or a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from streams.api.auth import ANONYMOUS, ApiConfigError, Principal, RateLimiter, Role, TokenStore
from streams.api.common import ApiError, Handler, Route, json_response, read_body
from streams.api.config import ApiSettings
from streams.api.peer_auth import PEER_HEADERS, PeerAuthError, PeerSigner
from streams.api.report_links import LinkSigner

log = logging.getLogger(__name__)

PRINCIPAL_KEY = web.RequestKey("mevrisk.principal", Principal)
"""Where :meth:`Access.admit` leaves the caller on the request (``streams.api.peers`` signs for it)."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def peer_signer(settings: ApiSettings) -> PeerSigner | None:
    """The signer of ``MEVRISK_PEER_SECRET``; None when unset (forwarding is off)."""
    secret = settings.peer_secret.get_secret_value().encode()
    if not secret:
        return None
    try:
        return PeerSigner(secret)
    except ValueError as e:
        raise ApiConfigError(f"MEVRISK_PEER_SECRET: {e}") from None


class Access:
    """Who is calling, and whether they may."""

    def __init__(self, settings: ApiSettings, tokens: TokenStore, signer: PeerSigner | None = None) -> None:
        self.settings, self.tokens, self.signer = settings, tokens, signer
        self.limiter = RateLimiter(settings.rate_per_sec, settings.rate_burst)
        self.links = LinkSigner.from_secret(settings.peer_secret.get_secret_value())
        """Signs and checks the links of routes with ``signed_link`` (report pages)."""
        self.own_url: Callable[[], str | None] = lambda: None
        """This worker's base URL as its peers address it (``register_views``); None: from ``Host``."""

    async def authenticate_peer(self, request: web.Request) -> Principal:
        """The actor a peer signed this request for; 401 unless the signature verifies."""
        if self.signer is None:
            raise ApiError(401, "peer request refused: MEVRISK_PEER_SECRET is not set on this worker")
        target = self.own_url() or f"{request.scheme}://{request.host}"
        body = await read_body(request, self.settings.max_body_bytes)
        try:
            claim = self.signer.verify(request.method, target, request.path_qs, body, request.headers)
            role = Role.parse(claim.role)
        except (PeerAuthError, ApiConfigError) as e:
            log.warning("peer request %s %s refused: %s", request.method, request.path, e)
            raise ApiError(401, f"peer request refused: {e}") from None
        if not claim.actor or len(claim.actor) > 200:
            raise ApiError(401, "peer request refused: bad actor name")
        return Principal(claim.actor, role, peer=claim.forwarded_by)

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

    async def admit(self, route: Route, request: web.Request) -> Principal:
        """The caller, once authenticated, within its rate, allowed the route's role and within
        the body limit; else an ``ApiError``. Left on the request under ``PRINCIPAL_KEY``."""
        if (request.content_length or 0) > self.settings.max_body_bytes:
            raise ApiError(413, f"request body over {self.settings.max_body_bytes} bytes")
        try:
            if any(h in request.headers for h in PEER_HEADERS):
                principal = await self.authenticate_peer(request)
            elif route.signed_link and "sig" in request.query:
                principal = self.links.verify(request.path, request.query)
            else:
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
        request[PRINCIPAL_KEY] = principal
        return principal

    async def guard(self, route: Route, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Admit the caller and run ``handler``; every failure becomes a JSON error response."""
        try:
            return await handler(request, await self.admit(route, request))
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


# ---- the web server as a whole ------------------------------------------------------------------
def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header, lower case, without port or IPv6 brackets.

    >>> host_name("LocalHost:6066"), host_name("[::1]:6066"), host_name("10.0.0.5")
    ('localhost', '::1', '10.0.0.5')
    """
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_host_names(bind: str | None, advertised: str | None, extra: str) -> frozenset[str] | None:
    """Host names the ``Host`` header may carry: the loopback names, the bind address (unless a
    wildcard), the advertised host and ``extra`` (comma-separated); None when ``extra`` has ``*``."""
    names = {n.strip().lower() for n in extra.split(",") if n.strip()}
    if "*" in names:
        return None
    for name in (bind, advertised):
        if name and name not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
            names.add(host_name(name) if name.count(":") <= 1 else name.strip("[]").lower())
    return frozenset(names | LOOPBACK_NAMES)


Next = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_guard(allowed: frozenset[str] | None) -> Middleware:
    """aiohttp middleware answering 403 to a request whose ``Host`` is not ``allowed`` (a page of
    another site whose name was rebound to this address); a request without ``Host`` passes."""
    @web.middleware
    async def check_host(request: web.Request, handler: Next) -> web.StreamResponse:
        header = request.headers.get("Host")
        if allowed is not None and header is not None and host_name(header) not in allowed:
            return json_response({"error": "this Host is not served here; add it to MEVRISK_ALLOWED_HOSTS "
                                           "if it is a name of this worker"}, 403)
        return await handler(request)

    return check_host


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` (an address or host name) only listens on the loopback interface."""
    name = bind.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may resolve to anything


def check_exposure(settings: ApiSettings, tokens: TokenStore, binds: Iterable[str]) -> None:
    """Refuse (``ApiConfigError``) open anonymous reads on a non-loopback bind unless
    ``MEVRISK_API_ALLOW_OPEN_READS`` says so."""
    open_reads = len(tokens) == 0 or settings.anonymous_reads
    exposed = [b for b in binds if not is_loopback(b)]
    if open_reads and exposed and not settings.allow_open_reads:
        why = "no API token is configured" if len(tokens) == 0 else "MEVRISK_API_ANONYMOUS_READS is on"
        raise ApiConfigError(
            f"the web server listens on {', '.join(exposed)} (not loopback) and {why}, so anyone who "
            "reaches it reads every portfolio: configure MEVRISK_API_TOKENS, bind to 127.0.0.1, or set "
            "MEVRISK_API_ALLOW_OPEN_READS=true to allow it")


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (constant-time comparison).

    >>> bearer_matches("Bearer s3cret-metrics", "s3cret-metrics"), bearer_matches(None, "x")
    (True, False)
    """
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(token.encode()).digest())

"""The guard every route goes through: bearer token, role, rate limit, body size, and JSON
errors (``ApiError`` becomes ``{"error": ...}`` with its status; anything else a logged 500)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from streams.api.auth import ANONYMOUS, Principal, RateLimiter, Role, TokenStore
from streams.api.common import ApiError, Handler, Route, json_response
from streams.api.config import ApiSettings

log = logging.getLogger(__name__)


class Access:
    """Who is calling, and whether they may."""

    def __init__(self, settings: ApiSettings, tokens: TokenStore) -> None:
        self.settings, self.tokens = settings, tokens
        self.limiter = RateLimiter(settings.rate_per_sec, settings.rate_burst)

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

    def admit(self, route: Route, request: web.Request) -> Principal:
        """The caller, once authenticated, within its rate, allowed the route's role and within
        the body limit; else an ``ApiError``."""
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
        return principal

    async def guard(self, route: Route, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Admit the caller and run ``handler``; every failure becomes a JSON error response."""
        try:
            return await handler(request, self.admit(route, request))
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

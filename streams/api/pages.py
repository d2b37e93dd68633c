"""The dashboard page and its files, the OpenAPI document, ``whoami``, and the JSON 404 for any
other path under ``/api/v1``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from streams.api.auth import Principal, Role, TokenStore
from streams.api.common import ApiError, Route, json_response

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
ASSET_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "dashboard", None),
    Route("GET", "/dashboard/{name}", "asset", None),
    Route("GET", "/api/v1/openapi.json", "openapi", None),
    Route("GET", "/api/v1/whoami", "whoami", Role.VIEWER),
)
CATCH_ALL: tuple[Route, ...] = tuple(
    Route(m, "/api/v1/{tail:.*}", "not_found", None) for m in ("GET", "POST", "PUT", "PATCH", "DELETE"))
"""Registered last: JSON 404 for any other path (or method) under /api/v1."""


class PageViews:
    def __init__(self, tokens: TokenStore, openapi: dict[str, Any] | None = None) -> None:
        self.tokens = tokens
        self._openapi = openapi
        self._assets: dict[str, tuple[bytes, str]] = {}

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

"""What every API module shares: the JSON error type, the JSON response, routes, and the
parsing of query parameters and bodies (each bad value is a 400 naming the parameter)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streams.api.auth import Principal, Role

JSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
MAX_LIMIT = 1_000
MAX_TS_MS = 2**53

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
    signed_link: bool = False
    """A request carrying ``sig`` in its query is admitted by a signed link
    (``streams.api.report_links``) instead of a bearer token."""


def flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, f"query parameter {name!r} must be true or false")


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer") from None
    if not low <= n <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return n


def str_field(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 2_000) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"field {name!r} must be a non-empty string")
    if len(value) > max_len:
        raise ApiError(400, f"field {name!r} is longer than {max_len} characters")
    return value


BODY_KEY = web.RequestKey("mevrisk.body", bytes)
"""Where :func:`read_body` keeps the body it read on the request (a peer's signature covers it too)."""


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole request body, at most ``max_bytes`` bytes (else 413), read once per request.

    ``content.read(n)`` returns what has arrived so far, so a body sent in several chunks is
    read until its end, not cut at the first chunk."""
    cached = request.get(BODY_KEY)
    if isinstance(cached, bytes):
        return cached
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body over {max_bytes} bytes")
    raw = b"".join(chunks)
    request[BODY_KEY] = raw
    return raw


async def json_body(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object of at most ``max_bytes`` bytes."""
    raw = await read_body(request, max_bytes)
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body

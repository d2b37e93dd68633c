"""``GET /api/v1/stream``: the live server-sent events (``hello``, then ``snapshot``, ``alert``
and ``control`` as the hub publishes them; ``?portfolio=``, ``?types=``). At most
``max_streams_per_caller`` streams per caller (a token's actor; anonymous: the client address),
so one caller cannot take every one of the worker's ``max_stream_clients``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from streams.api.auth import Principal, Role
from streams.api.common import JSON_OPTS, ApiError, Route
from streams.api.hub import CLOSE
from streams.api.state import ApiState

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/stream", "stream", Role.VIEWER),
)


def sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, option=JSON_OPTS) + b"\n\n"


class StreamViews:
    def __init__(self, state: ApiState) -> None:
        self.state = state
        self._open: dict[str, int] = {}
        """Open streams per caller key."""

    async def stream(self, request: web.Request, who: Principal) -> web.StreamResponse:
        hub, settings = self.state.hub, self.state.settings
        if hub.subscriber_count >= settings.max_stream_clients:
            raise ApiError(503, "too many live streams open on this worker")
        caller = f"addr:{request.remote}" if who.anonymous else f"actor:{who.name}"
        if self._open.get(caller, 0) >= settings.max_streams_per_caller:
            raise ApiError(429, f"{settings.max_streams_per_caller} live streams are already open for this "
                                "caller; close one first", retry_after_secs=5.0)
        self._open[caller] = self._open.get(caller, 0) + 1
        try:
            return await self._serve(request, who)
        finally:
            left = self._open.pop(caller) - 1
            if left > 0:
                self._open[caller] = left

    async def _serve(self, request: web.Request, who: Principal) -> web.StreamResponse:
        hub = self.state.hub
        portfolio = request.query.get("portfolio") or None
        kinds = set((request.query.get("types") or "snapshot,alert,control").split(","))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
        sub = hub.subscribe()
        try:
            await resp.prepare(request)
            hello = {"portfolios": sorted(self.state.snapshots()), "ts_ms": self.state.watermark(),
                     "actor": who.name, "role": who.role.name.lower()}
            await resp.write(b"retry: 3000\n\n" + sse("hello", hello))
            await self._pump(resp, sub, kinds, portfolio)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away: the normal end of a live page
        finally:
            hub.unsubscribe(sub)
        return resp

    async def _pump(self, resp: web.StreamResponse, sub: Any, kinds: set[str], portfolio: str | None) -> None:
        """Write the subscriber's events until the hub closes it or it falls too far behind."""
        keepalive_secs = self.state.settings.stream_keepalive_secs
        while True:
            try:
                kind, value = await asyncio.wait_for(sub.queue.get(), keepalive_secs)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if (kind, value) == CLOSE:
                return
            if kind not in kinds:
                continue
            if portfolio and kind == "snapshot" and value.get("portfolio") != portfolio:
                continue
            await resp.write(sse(kind, value))
            if sub.dropped and sub.queue.empty():
                await resp.write(sse("overflow", {"error": "client too slow; reconnect"}))
                return

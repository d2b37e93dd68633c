"""Asking the other workers of the consumer group: forward a request to the one that can answer
it, send it to all of them, or hand a global change to the leader.

A forwarded request carries the caller's ``Authorization`` (the peer checks the same role and
audits the same actor) and ``X-MevRisk-Forwarded-By``: the peer answers it locally and never
forwards it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streams.api.common import ApiError
from streams.api.state import ApiState

log = logging.getLogger(__name__)

FORWARDED = "X-MevRisk-Forwarded-By"
"""Set on a request one worker forwards to another: the receiver answers it locally."""
FORWARD_TIMEOUT_SECS = 10.0


class Peers:
    """The other workers, by base URL (``urls``, set by ``register_views``)."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.urls: Callable[[], list[str]] = list
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _call(self, request: web.Request) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        """The session and headers to pass ``request`` on to a peer: marked forwarded (the peer
        acts locally only), with the caller's ``Authorization`` (same role, same actor)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECS))
        headers = {"Content-Type": "application/json", FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return self._session, headers

    async def forward(self, request: web.Request, body: dict[str, Any], pass_over: int = 404
                      ) -> web.Response | None:
        """Ask the other workers, in URL order, to handle this request; the first answer other
        than ``pass_over`` is returned as it is. None: every worker passed (or there is none)."""
        if request.headers.get(FORWARDED):
            return None  # forwarded once already: answered here
        peers = self.urls()
        if not peers:
            return None
        session, headers = self._call(request)
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

    async def broadcast(self, request: web.Request) -> int:
        """Send this request to every other worker (marked forwarded, so they act locally only);
        returns how many answered 2xx. A worker that does not answer is logged, not fatal."""
        session, headers = self._call(request)
        done = 0
        for url in self.urls():
            try:
                async with session.request(request.method, url + request.path_qs, headers=headers,
                                           data=b"{}") as resp:
                    done += 200 <= resp.status < 300
                    if resp.status >= 300:
                        log.warning("%s %s on %s answered %d", request.method, request.path, url, resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s %s on %s failed: %r", request.method, request.path, url, exc)
        return done

    async def at_leader(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        """Global changes (silences, rules reloads) are taken and audited by the leader (the owner
        of input partition 0, which writes the global audit chain); the others follow them from
        ``risk.audit``. None: this worker is the leader, handle it here; else the leader's answer."""
        self.state.require_pipeline()
        if self.state.host.is_leader():
            return None
        if request.headers.get(FORWARDED):
            raise ApiError(421, "this worker does not own input partition 0; ask the leader")
        forwarded = await self.forward(request, body, pass_over=421)
        if forwarded is None:
            raise ApiError(503, "no worker owns input partition 0 right now (rebalancing); retry shortly")
        return forwarded

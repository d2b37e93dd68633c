"""Asking the other workers of the consumer group: forward a request to the one that can answer
it, send it to all of them, or hand a change to the worker that audits it (the leader for global
changes, the owner of a scope's input partition for controls).

A forwarded request never carries the caller's ``Authorization`` (issue 12, item 5): the
forwarding worker signs it with ``MEVRISK_PEER_SECRET`` for the target peer, naming the original
actor and role (``streams.api.peer_auth``); the peer verifies the signature, checks the same role,
audits the same actor, answers it locally and never forwards it again. Without a peer secret
nothing is forwarded: the caller gets a 409 naming the worker to ask instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streams.api.access import PRINCIPAL_KEY
from streams.api.auth import Principal
from streams.api.common import ApiError
from streams.api.peer_auth import FORWARDED, PeerSigner
from streams.api.state import ApiState

log = logging.getLogger(__name__)

__all__ = ["FORWARDED", "Peers"]

FORWARD_TIMEOUT_SECS = 10.0
NOT_HERE = 421
"""What a worker answers a forwarded change it does not audit (not the leader, not the owner)."""


def _no_secret(what: str, owner: str | None, peers: list[str]) -> ApiError:
    where = owner or ("one of " + ", ".join(peers) if peers else "another worker")
    return ApiError(409, f"{what} is handled by {where}; forwarding between workers is off because "
                         "MEVRISK_PEER_SECRET is not set: send the request to that worker",
                    owner=owner)


class Peers:
    """The other workers, by base URL (``urls``, ``own_url`` and ``owner_of`` set by ``register_views``)."""

    def __init__(self, state: ApiState, signer: PeerSigner | None = None) -> None:
        self.state, self.signer = state, signer
        self.urls: Callable[[], list[str]] = list
        self.own_url: Callable[[], str | None] = lambda: None
        self.owner_of: Callable[[int], str | None] = lambda _partition: None
        """Base URL of the worker that owns input partition N (None: unknown)."""
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECS))
        return self._session

    def _headers(self, signer: PeerSigner, request: web.Request, target: str, data: bytes) -> dict[str, str]:
        """Headers passing ``request`` on to ``target``: signed for the caller the guard admitted,
        no ``Authorization`` (the caller's token stays on this worker)."""
        who: Principal = request[PRINCIPAL_KEY]
        own = self.own_url() or f"{request.scheme}://{request.host}"
        signed = signer.sign(request.method, target, request.path_qs, data, forwarded_by=own,
                                  actor=who.name, role=who.role.name.lower())
        return {"Content-Type": "application/json", **signed}

    async def _send(self, signer: PeerSigner, request: web.Request, url: str, data: bytes
                    ) -> tuple[int, bytes, str]:
        """(status, body, content type) of ``request`` sent to the peer at ``url``; no redirect is
        followed (a peer's answer goes back as it is)."""
        session = self._client()
        async with session.request(request.method, url + request.path_qs, data=data, allow_redirects=False,
                                   headers=self._headers(signer, request, url, data)) as resp:
            return resp.status, await resp.read(), resp.content_type

    async def forward(self, request: web.Request, body: dict[str, Any], pass_over: int = 404, *,
                      what: str = "this request", owner: str | None = None) -> web.Response | None:
        """Ask the other workers, in URL order, to handle this request; the first answer other
        than ``pass_over`` is returned as it is. None: every worker passed (or there is none)."""
        if request.headers.get(FORWARDED):
            return None  # forwarded once already (the guard verified its signature): answered here
        peers = self.urls()
        if not peers:
            return None
        signer = self.signer
        if signer is None:
            raise _no_secret(what, owner, peers)
        data = orjson.dumps(body)
        silent: list[str] = []
        for url in peers:
            try:
                status, content, content_type = await self._send(signer, request, url, data)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # the type only: an aiohttp error's repr can carry the request's headers
                log.warning("forwarding %s %s to %s failed: %s", request.method, request.path, url,
                            type(exc).__name__)
                silent.append(url)
                continue
            if status == pass_over:
                continue
            return web.Response(body=content, status=status, content_type=content_type,
                                headers={"Cache-Control": "no-store", "X-MevRisk-Answered-By": url,
                                         "X-Content-Type-Options": "nosniff"})
        if silent:
            raise ApiError(503, f"not found on this worker, and {', '.join(silent)} did not answer; "
                                "retry shortly")
        return None

    async def broadcast(self, request: web.Request) -> int:
        """Send this request to every other worker (signed, so they act locally only); returns how
        many answered 2xx. A worker that does not answer is logged, not fatal. Without a peer
        secret nothing is sent (logged)."""
        peers, signer = self.urls(), self.signer
        if signer is None:
            if peers:
                log.warning("%s %s not sent to %d other workers: MEVRISK_PEER_SECRET is not set",
                            request.method, request.path, len(peers))
            return 0
        done = 0
        for url in peers:
            try:
                status, _, _ = await self._send(signer, request, url, b"{}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("%s %s on %s failed: %s", request.method, request.path, url, type(exc).__name__)
                continue
            done += 200 <= status < 300
            if status >= 300:
                log.warning("%s %s on %s answered %d", request.method, request.path, url, status)
        return done

    async def at_auditor(self, request: web.Request, body: dict[str, Any], here: bool, what: str,
                         owner_partition: int | None) -> web.Response | None:
        """Hand a change to the worker that audits it (``here``: this one does). None: handle it
        here; else that worker's answer. A forwarded change that lands on the wrong worker is
        answered 421, so the forwarder asks the next."""
        if here:
            return None
        if request.headers.get(FORWARDED):
            raise ApiError(NOT_HERE, f"this worker does not take {what}; ask its owner")
        owner = self.owner_of(owner_partition) if owner_partition is not None else None
        forwarded = await self.forward(request, body, pass_over=NOT_HERE, what=what, owner=owner)
        if forwarded is None:
            raise ApiError(503, f"no worker takes {what} right now (rebalancing); retry shortly")
        return forwarded

    async def at_leader(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        """Global changes (silences, rules reloads) are taken and audited by the leader (the owner
        of input partition 0, which writes the global audit chain); the others follow them from
        ``risk.audit``. None: this worker is the leader, handle it here; else the leader's answer."""
        self.state.require_pipeline()
        return await self.at_auditor(request, body, self.state.host.is_leader(),
                                     "global changes (the leader, owner of input partition 0)", 0)

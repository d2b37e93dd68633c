"""Issue 12, item 7 (the API's part): the whole request body is read up to the cap (a body that
arrives in several chunks is not cut at the first one into a spurious 400); the live event stream
is capped per caller, so one caller cannot take every stream of a worker; no token, peer secret or
``Authorization`` header reaches a log line of the API, not even through a peer that misbehaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.assembly import PipelineOptions, build_pipeline
from tests.unit.api.conftest import BEARER, TOKENS, FakeHost, base, host, make_client  # noqa: F401 - fixtures

PEER_SECRET = "security-test-peer-secret-02"
OPER, VIEWER, ADMIN = BEARER["operator"], BEARER["viewer"], BEARER["admin"]


async def test_a_body_sent_in_chunks_is_read_whole(host: FakeHost) -> None:  # noqa: F811
    client = await make_client(host, max_body_bytes=4_000)
    try:
        alert = host.pipeline.alerts.alerts()[0]
        raw = json.dumps({"alert_id": alert.id, "action": "acknowledge", "comment": "x" * 1_500}).encode()
        first_sent = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield raw[:40]
            first_sent.set()
            await asyncio.sleep(0.3)  # the server has the first chunk alone for a while
            yield raw[40:]

        resp = await client.post("/api/v1/alerts", data=chunks(), headers={**OPER,
                                                                          "Content-Type": "application/json"})
        assert first_sent.is_set()
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["actor"] == "olga"

        async def too_big() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
            for _ in range(10):
                yield b" " * 1_000

        resp = await client.post("/api/v1/alerts", data=too_big(), headers=OPER)
        assert resp.status == 413
    finally:
        await client.close()


async def test_streams_are_capped_per_caller(host: FakeHost) -> None:  # noqa: F811
    client = await make_client(host, max_streams_per_caller=2, max_stream_clients=64)
    opened = []
    try:
        for _ in range(2):
            resp = await client.get("/api/v1/stream", headers=VIEWER)
            assert resp.status == 200
            opened.append(resp)
        third = await client.get("/api/v1/stream", headers=VIEWER)
        assert third.status == 429 and "Retry-After" in third.headers
        assert "streams" in (await third.json())["error"]
        other = await client.get("/api/v1/stream", headers=OPER)  # another caller still gets one
        assert other.status == 200
        opened.append(other)
        opened.pop(0).close()  # a stream closed frees its place
        again = None
        for i in range(200):  # the server notices the closed stream when it next writes to it
            control = {"control_id": f"c{i}", "scope": "global"}
            client.service.hub.publish([("risk.controls", "global", control)])
            again = await client.get("/api/v1/stream", headers=VIEWER)
            if again.status == 200:
                break
            again.close()
            await asyncio.sleep(0.05)
        assert again is not None and again.status == 200
        opened.append(again)
    finally:
        for resp in opened:
            resp.close()
        await client.close()


@pytest.fixture
async def redirecting_peer() -> AsyncIterator[str]:
    """A fake member of the group that answers every request with a redirect to itself."""
    async def handle(request: web.Request) -> web.Response:
        raise web.HTTPFound(location=str(request.url))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_no_token_or_secret_in_any_log_line(host: FakeHost, redirecting_peer: str,  # noqa: F811
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = await make_client(FakeHost(build_pipeline(PipelineOptions(bar_ms=1000))),
                                 peer_secret=PEER_SECRET)
    try:
        stranger.service.peers = lambda: [redirecting_peer]
        await stranger.post("/api/v1/alerts", headers=OPER, json={"alert_id": "a1", "action": "resolve"})
        await stranger.post("/api/v1/rules/reload", headers=ADMIN)
        await stranger.post("/api/v1/controls", headers=ADMIN, json={"scope": "global", "command": "HALT",
                                                                     "reason": "x"})
        await stranger.get("/api/v1/alerts", headers={"Authorization": "Bearer guessed-token-12345"})
        await stranger.post("/api/v1/alerts", headers={**OPER, "X-MevRisk-Forwarded-By": "1"}, json={})
    finally:
        await stranger.close()
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "the scenario logs something (forwarding failures, refused requests)"
    for secret in (*TOKENS, "guessed-token-12345", PEER_SECRET):
        assert secret not in text, secret
    assert "authorization" not in text.lower()

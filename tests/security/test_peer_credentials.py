"""Issue 12, item 5: credentials between workers.

A worker passes an acknowledgement, a control or a rules reload on to its peers without the
caller's bearer token: it signs the request with ``MEVRISK_PEER_SECRET`` for the original actor
and role. A peer honours ``X-MevRisk-Forwarded-By`` and the actor headers only when that signature
verifies. A fake peer (anyone who joins the consumer group with a made-up URL) receives no user
token, and what it receives cannot be replayed to a real worker or altered. Controls are taken by
the owner of their scope's input partition, so each is audited on its own chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.assembly import PipelineOptions, build_pipeline
from tests.integration.conftest import env, start_worker, worker_watch  # noqa: F401 - fixtures
from tests.unit.api.conftest import BEARER, TOKENS, FakeHost, base, host, make_client  # noqa: F401 - fixtures

PEER_SECRET = "security-test-peer-secret-01"
OPER, ADMIN = BEARER["operator"], BEARER["admin"]
USER_TOKENS = list(TOKENS)


class CapturingPeer:
    """A fake member of the consumer group: records every request it receives, answers 404."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.server: TestServer | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        return web.json_response({"error": "not here"}, status=404)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    def leaked(self) -> list[str]:
        """Every user token or Authorization header seen in what this peer received."""
        out = []
        for _method, _path, headers, body in self.received:
            text = json.dumps(headers) + body.decode(errors="replace")
            out += [t for t in USER_TOKENS if t in text]
            out += [k for k in headers if k.lower() == "authorization"]
        return out


@pytest.fixture
async def fake_peer() -> AsyncIterator[CapturingPeer]:
    peer = CapturingPeer()
    await peer.start()
    yield peer
    assert peer.server is not None
    await peer.server.close()


def _url(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def test_a_fake_peer_receives_no_user_token_and_cannot_replay(host: FakeHost,  # noqa: F811
                                                                    fake_peer: CapturingPeer) -> None:
    """Acknowledge (unknown alert: every peer is asked) and rules reload (sent to every peer)
    through a worker whose group holds a fake peer: the fake gets signed requests, no token; the
    captured request replayed to a real worker, or altered, is refused."""
    real = await make_client(host, peer_secret=PEER_SECRET)
    stranger = await make_client(FakeHost(build_pipeline(PipelineOptions(bar_ms=1000))),
                                 peer_secret=PEER_SECRET)
    try:
        fake_url = str(fake_peer.server.make_url("")).rstrip("/")  # type: ignore[union-attr]
        stranger.service.peers = lambda: [fake_url, _url(real)]
        resp = await stranger.post("/api/v1/alerts", headers=OPER, json={"alert_id": "no-such-alert",
                                                                         "action": "acknowledge"})
        assert resp.status == 404, await resp.text()
        resp = await stranger.post("/api/v1/rules/reload", headers=ADMIN)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["workers"] == 2  # here and the real peer; the fake answered 404
        assert [r[:2] for r in fake_peer.received] == [("POST", "/api/v1/alerts"),
                                                        ("POST", "/api/v1/rules/reload")]
        assert fake_peer.leaked() == []
        _method, path, headers, body = fake_peer.received[0]
        assert headers["X-MevRisk-Actor"] == "olga" and headers["X-MevRisk-Actor-Role"] == "operator"
        assert re.fullmatch(r"v1=[0-9a-f]{64}", headers["X-MevRisk-Peer-Signature"])

        # replayed to a real worker: it was signed for the fake's URL, not the real one's
        signed = {k: v for k, v in headers.items() if k.startswith("X-MevRisk-")}
        resp = await real.post(path, headers={**signed, "Content-Type": "application/json"}, data=body)
        assert resp.status == 401 and "peer request refused" in (await resp.json())["error"]
        # altered: a bigger role, or another actor, breaks the signature
        for header, value in (("X-MevRisk-Actor-Role", "admin"), ("X-MevRisk-Actor", "ada")):
            resp = await real.post(path, headers={**signed, header: value}, data=body)
            assert resp.status == 401
        assert host.of("risk.alerts") == []  # the real worker only took the (signed) reload
        assert [r["kind"] for r in host.of("risk.audit")] == ["rules_reload"]
    finally:
        await stranger.close()
        await real.close()


async def test_peer_headers_are_honoured_only_when_signed(host: FakeHost) -> None:  # noqa: F811
    client = await make_client(host, peer_secret=PEER_SECRET)
    try:
        alert = host.pipeline.alerts.alerts()[0]
        body = {"alert_id": alert.id, "action": "acknowledge"}
        # a caller's own token plus forged peer headers: refused, not "answered locally as forwarded"
        for forged in ({"X-MevRisk-Forwarded-By": "1"}, {"X-MevRisk-Actor": "ada"},
                       {"X-MevRisk-Forwarded-By": "http://w2:6066", "X-MevRisk-Actor": "ada",
                        "X-MevRisk-Actor-Role": "admin", "X-MevRisk-Peer-Timestamp": "1",
                        "X-MevRisk-Peer-Signature": "v1=" + "0" * 64}):
            resp = await client.post("/api/v1/alerts", headers={**OPER, **forged}, json=body)
            assert resp.status == 401, (forged, await resp.text())
        assert host.published == []
        # signed by a peer that holds the secret: acted on for the actor it names, once
        from streams.api.peer_auth import PeerSigner

        data = json.dumps(body).encode()
        signed = PeerSigner(PEER_SECRET.encode()).sign("POST", _url(client), "/api/v1/alerts", data,
                                                       forwarded_by="http://w2:6066", actor="olga",
                                                       role="operator")
        resp = await client.post("/api/v1/alerts", headers=signed, data=data)
        assert resp.status == 200 and (await resp.json())["actor"] == "olga"
        assert (await client.post("/api/v1/alerts", headers=signed, data=data)).status == 401  # replay
        # signed with another secret
        other = PeerSigner(b"another-secret-0123456789").sign("POST", _url(client), "/api/v1/alerts", data,
                                                              forwarded_by="x", actor="olga", role="operator")
        assert (await client.post("/api/v1/alerts", headers=other, data=data)).status == 401
    finally:
        await client.close()


async def test_without_a_peer_secret_nothing_is_forwarded(fake_peer: CapturingPeer) -> None:
    stranger = await make_client(FakeHost(build_pipeline(PipelineOptions(bar_ms=1000))))
    try:
        fake_url = str(fake_peer.server.make_url("")).rstrip("/")  # type: ignore[union-attr]
        stranger.service.peers = lambda: [fake_url]
        resp = await stranger.post("/api/v1/alerts", headers=OPER, json={"alert_id": "a1",
                                                                         "action": "resolve"})
        body = await resp.json()
        assert resp.status == 409 and fake_url in body["error"] and "MEVRISK_PEER_SECRET" in body["error"]
        assert fake_peer.received == []
    finally:
        await stranger.close()


async def test_controls_go_to_the_owner_of_the_scope(host: FakeHost) -> None:  # noqa: F811
    """A HALT posted to a worker that does not own the strategy's input partition is taken and
    audited by the owner (on the strategy's chain), with the caller as actor."""
    owner_pipeline = host.pipeline
    strategy = sorted(owner_pipeline.risk.health.strategies())[0]
    home = 0  # the fixture's pipeline was fed every input as partition 0
    owner = await make_client(host, peer_secret=PEER_SECRET)
    try:
        owner_pipeline.owned_partitions = frozenset({home})
        stranger_host = FakeHost(_fork(owner_pipeline, owned=frozenset({home + 100})))
        stranger = await make_client(stranger_host, peer_secret=PEER_SECRET)
        try:
            stranger.service.peers = lambda: [_url(owner)]
            resp = await stranger.post("/api/v1/controls", headers=ADMIN,
                                       json={"scope": f"strategy:{strategy}", "command": "HALT",
                                             "reason": "security test"})
            assert resp.status == 200, await resp.text()
            assert resp.headers["X-MevRisk-Answered-By"] == _url(owner)
            assert stranger_host.published == []
            controls = host.of("risk.controls")
            assert controls and controls[-1]["scope"] == f"strategy:{strategy}"
            audit = [r for r in host.of("risk.audit") if r["kind"] == "control"]
            assert audit and audit[-1]["stream"] == f"risk-p{home}"
            assert audit[-1]["payload"]["actor"] == "ada"
        finally:
            await stranger.close()
    finally:
        owner_pipeline.owned_partitions = None
        await owner.close()


def _fork(pipeline: Any, owned: frozenset[int]) -> Any:
    """Another worker's copy of the same history that owns other partitions."""
    from tests.unit.api.conftest import Base

    copy = Base(pipeline).fresh()
    copy.owned_partitions = owned
    return copy


# ---- two live workers and a fake peer on a real broker --------------------------------------------
@pytest.mark.integration
def test_live_workers_forward_signed_and_a_fake_peer_gets_no_token(env, start_worker, tmp_path) -> None:  # noqa: F811
    """Two workers with a peer secret: an acknowledgement and a HALT sent to the worker that does
    not own the alert's or the scope's partition are taken and audited by the owner, for the caller.
    Then a third member joins the group advertising a made-up URL where a capturing server listens:
    what it is sent carries no user token and does not verify on a real worker."""
    from tests.integration.conftest import consume, run, wait_until
    from tests.integration.test_api import ADMIN as admin
    from tests.integration.test_api import TOKENS as tokens
    from tests.integration.test_api import VIEWER as viewer
    from tests.integration.test_api import _feed, _owned_alert, _state_on, call, get

    common = {"MEVRISK_BAR_MS": "1000", "MEVRISK_API_TOKENS": json.dumps(tokens),
              "MEVRISK_PEER_SECRET": PEER_SECRET}
    first, second = start_worker(**common), start_worker(**common)

    def peers(worker: Any) -> list[str]:
        return get(worker, "/api/v1/health", token=viewer)[1]["peers"]

    for worker, peer in ((first, second), (second, first)):
        wait_until(lambda w=worker, p=peer: [u.rsplit(":", 1)[-1] for u in peers(w)] == [str(p.web_port)],
                   90, f"the consumer group seen by :{worker.web_port}")
    _feed(env, tmp_path, duration_s=40)
    owner, other, alert = wait_until(lambda: _owned_alert((first, second)), 120, "a firing portfolio alert")

    status, body, headers = call(other, "POST", "/api/v1/alerts", {"alert_id": alert["id"],
                                                                   "action": "acknowledge"}, token=admin)
    assert status == 200 and body["actor"] == "it-admin", body
    assert headers.get("X-MevRisk-Answered-By", "").endswith(f":{owner.web_port}")
    wait_until(lambda: _state_on(owner, alert["id"]) == "acknowledged", 30, "the ack on its owner")

    scope = f"portfolio:{alert['portfolio']}"
    status, body, headers = call(other, "POST", "/api/v1/controls", {"scope": scope, "command": "HALT",
                                                                     "reason": "live test"}, token=admin)
    assert status == 200, body
    assert headers.get("X-MevRisk-Answered-By", "").endswith(f":{owner.web_port}")

    def control_audits() -> list[dict[str, Any]]:
        records = run(consume(env.bootstrap, env.topic("risk.audit"), 100_000, timeout=5))
        return [r for r in records if r.get("kind") == "control"
                and (r.get("payload") or {}).get("actor") == "it-admin"]

    audits = wait_until(control_audits, 60, "the HALT audited")
    assert len(audits) == 1 and re.fullmatch(r"risk-p\d+", audits[0]["stream"]), audits

    # a fake member of the group: a worker advertising 127.0.0.2:<port>, where a capturing server listens
    fake_worker = start_worker(MEVRISK_WEB_HOST="127.0.0.2", MEVRISK_WEB_BIND="127.0.0.1")
    fake_url = f"http://127.0.0.2:{fake_worker.web_port}"
    captured = _CaptureServer("127.0.0.2", fake_worker.web_port)
    try:
        wait_until(lambda: fake_url in peers(first), 120, "the fake peer in the group")
        status, body, _ = call(first, "POST", "/api/v1/alerts", {"alert_id": "no-such-alert",
                                                                 "action": "resolve"}, token=admin)
        assert status == 404, body
        assert call(first, "POST", "/api/v1/rules/reload", {}, token=admin)[0] == 200
        wait_until(lambda: len(captured.requests) >= 2, 30, "the fake peer asked")
        for path, head, payload in captured.requests:
            text = json.dumps(head) + payload.decode(errors="replace")
            assert admin not in text and viewer not in text and "authorization" not in text.lower(), path
            assert head.get("X-MevRisk-Actor") == "it-admin" and head.get("X-MevRisk-Peer-Signature")
        path, head, payload = captured.requests[0]
        replay = {k: v for k, v in head.items() if k.startswith("X-MevRisk-")}
        status = _post(f"http://127.0.0.1:{second.web_port}{path}", payload, replay)
        assert status == 401  # signed for the fake's URL, and only once
    finally:
        captured.close()


class _CaptureServer:
    """An HTTP server (in a thread) that records every POST and answers 404."""

    def __init__(self, address: str, port: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.path, dict(self.headers), self.rfile.read(size)))
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "not here"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _post(url: str, data: bytes, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)

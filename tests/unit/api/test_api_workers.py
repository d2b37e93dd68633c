"""Several workers: alert actions forwarded to the worker that holds the alert, silences
followed from ``risk.audit`` by every worker, delivery outcomes served from the replicated
audit view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agents.assembly import PipelineOptions, build_pipeline
from agents.audit.chain import AuditChain
from agents.audit.trust import audit_key, sign
from tests.unit.api.conftest import BEARER, FakeHost, make_client

VIEWER, OPER = BEARER["viewer"], BEARER["operator"]
FAR_MS = 2_000_000_000_000
KEY = audit_key(b"unit-test-worker-secret")
"""The workers' audit key: silences are followed only from records signed with it."""


def _delivery(chain: AuditChain, outcome: str, alert_id: str, ts_ms: int, channel: str = "webhook",
              error: str | None = None) -> dict[str, Any]:
    payload = {"channel": channel, "channel_type": "webhook", "outcome": outcome, "attempt": 1,
               "max_attempts": 3, "batch_id": f"b-{alert_id}", "kind": "single",
               "event_ids": [f"e-{alert_id}"], "alert_ids": [alert_id], "fingerprints": [f"fp-{alert_id}"],
               "severity": "critical", "status": "firing", "error": error, "status_code": 200,
               "latency_secs": 0.01, "retry_in_secs": None, "ts_ms": ts_ms, "event_ts_ms": ts_ms - 500}
    return chain.append("delivery", payload, ts_ms - 500)


# ---- deliveries ---------------------------------------------------------------------------
async def test_deliveries_newest_first_with_filters(client) -> None:
    chain = AuditChain("notify")
    records = [_delivery(chain, "failed", "a1", 1_000, error="HTTP 503"),
               _delivery(chain, "delivered", "a1", 2_000),
               _delivery(chain, "gave_up", "a2", 3_000, channel="slack", error="timeout")]
    hub = client.service.hub
    hub.publish([("risk.audit", "notify", r) for r in records])
    hub.publish([("risk.audit", "notify", records[0])])  # seen again (local + replica): kept once
    hub.publish([("risk.audit", "risk", {"seq": 9, "kind": "alert", "payload": {"id": "x"}})])

    resp = await client.get("/api/v1/deliveries", headers=VIEWER)
    assert resp.status == 200
    body = await resp.json()
    assert [d["outcome"] for d in body["deliveries"]] == ["gave_up", "delivered", "failed"]
    newest = body["deliveries"][0]
    assert newest["channel"] == "slack" and newest["error"] == "timeout" and newest["attempt"] == 1
    assert newest["timestamp"].startswith("1970-01-01T00:00:03") and newest["audit_seq"] == 2

    async def outcomes(query: str) -> list[str]:
        resp = await client.get(f"/api/v1/deliveries?{query}", headers=VIEWER)
        assert resp.status == 200, await resp.text()
        return [d["outcome"] for d in (await resp.json())["deliveries"]]

    assert await outcomes("channel=webhook") == ["delivered", "failed"]
    assert await outcomes("outcome=failed") == ["failed"]
    assert await outcomes("alert_id=a1") == ["delivered", "failed"]
    assert await outcomes("alert_id=fp-a2") == ["gave_up"]  # a fingerprint works as alert_id too
    assert await outcomes("fingerprint=fp-a1&limit=1") == ["delivered"]
    assert await outcomes("channel=sms") == []
    for bad in ("outcome=lost", "limit=0", "limit=abc"):
        resp = await client.get(f"/api/v1/deliveries?{bad}", headers=VIEWER)
        assert resp.status == 400 and "error" in await resp.json()


# ---- silences followed from risk.audit -------------------------------------------------------
def _silence_record(chain: AuditChain, payload: dict[str, Any]) -> dict[str, Any]:
    return sign(chain.append("silence", payload, 1_000), KEY)


async def test_silences_of_other_workers_are_applied_once_and_expiry_sticks(client, host: FakeHost) -> None:
    engine = host.pipeline.alerts
    other = AuditChain("risk")  # another worker's chain (same stream name)
    sid = "0" * 16
    add = {"action": "add", "id": sid, "actor": "olga", "comment": "maintenance",
           "starts_ms": 0, "ends_ms": FAR_MS, "matchers": [{"name": "portfolio", "value": "beta", "op": "="}]}
    before = {s.id for s in engine.silences()}
    hub = client.service.hub
    hub.audit_key = KEY
    unsigned = other.append("silence", add, 1_000)
    hub.publish([("risk.audit", "risk", unsigned), ("risk.audit", "risk", {**unsigned, "mac": "0" * 64})])
    assert {s.id for s in engine.silences()} == before, "a silence record without a valid tag is not followed"
    assert dict(hub.audit_refused) == {"forged": 2}
    hub.publish([("risk.audit", "risk", _silence_record(other, add))])
    added = {s.id for s in engine.silences()} - before
    assert len(added) == 1
    real_id = added.pop()
    # the same action read again (e.g. the replicated reader re-reading the tail): no duplicate
    hub.publish([("risk.audit", "risk", _silence_record(other, {**add, "id": real_id}))])
    assert {s.id for s in engine.silences()} - before == {real_id}
    resp = await client.get("/api/v1/silences", headers=VIEWER)
    assert real_id in {s["id"] for s in (await resp.json())["silences"]}
    hub.publish([("risk.audit", "risk", _silence_record(other, {"action": "delete", "id": real_id,
                                                                 "actor": "olga"}))])
    assert real_id not in {s.id for s in engine.silences()}
    hub.publish([("risk.audit", "risk", _silence_record(other, {**add, "id": real_id}))])
    assert real_id not in {s.id for s in engine.silences()}, "an expired silence stays expired"
    assert host.published == [], "followed silences are not audited again"


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Yield to the event loop until ``condition()`` holds. ``timeout_s`` only stops a test that would
    hang; it is no performance bound (a slow machine takes longer and still passes)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)

async def test_silences_wait_for_recovery_and_their_event_time() -> None:
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000))
    pipeline.heartbeat(10_000)  # this worker's clock
    host = FakeHost(pipeline, ready=asyncio.Event())
    client = await make_client(host)
    try:
        engine = host.pipeline.alerts
        client.service.hub.audit_key = KEY
        before = len(engine.silences())
        add = {"action": "add", "id": "x", "actor": "olga", "comment": "", "starts_ms": 0, "ends_ms": FAR_MS,
               "matchers": {"alertname": "HighVaR95"}}
        client.service.hub.publish([("risk.audit", "risk", _silence_record(AuditChain("risk"), add))])
        assert len(engine.silences()) == before, "held back while the worker replays"
        host.ready.set()
        await eventually(lambda: len(engine.silences()) == before + 1, "the silence applied after recovery")
        # taken at an event time this worker has not reached yet: applied once its clock gets there
        later = host.pipeline.watermark_ms + 5_000
        ahead = sign(AuditChain("risk").append("silence", {**add, "id": "y", "comment": "later"}, later), KEY)
        client.service.hub.publish([("risk.audit", "risk", ahead)])
        await asyncio.sleep(0.3)  # a chance to apply it too early (can only miss a bug, not flake)
        assert len(engine.silences()) == before + 1
        async with host._lock:
            host.pipeline.heartbeat(later)
        await eventually(lambda: len(engine.silences()) == before + 2,
                         "the silence applied at its event time")
    finally:
        await client.close()


# ---- acknowledge / resolve forwarded to the worker holding the alert ------------------------
PEER_SECRET = "unit-test-peer-secret-0001"


async def test_alert_action_is_forwarded_to_the_owner(host: FakeHost) -> None:
    owner = await make_client(host, peer_secret=PEER_SECRET)
    stranger_host = FakeHost(build_pipeline(PipelineOptions(bar_ms=1000)))  # holds no alert
    stranger = await make_client(stranger_host, peer_secret=PEER_SECRET)
    try:
        stranger.service.peers = lambda: [str(owner.make_url("")).rstrip("/")]
        alert = host.pipeline.alerts.alerts()[0]
        resp = await stranger.post("/api/v1/alerts", headers=OPER,
                                   json={"alert_id": alert.id, "action": "acknowledge", "comment": "on it"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["actor"] == "olga" and "acknowledged" in body["message"]
        assert resp.headers["X-MevRisk-Answered-By"] == stranger.service.peers()[0]
        acked = [e for e in host.of("risk.alerts") if e["transition"] == "acknowledged"]
        assert acked and acked[0]["id"] == alert.id and acked[0]["acknowledged_by"] == "olga"
        assert stranger_host.published == []
        audit = [r for r in host.of("risk.audit") if r["kind"] == "alert"]
        assert audit[-1]["payload"]["acknowledged_by"] == "olga"

        # the role is checked (the signed request names it)
        resp = await stranger.post("/api/v1/alerts", headers=VIEWER, json={"alert_id": alert.id,
                                                                           "action": "resolve"})
        assert resp.status == 403
        resp = await stranger.post("/api/v1/alerts", headers=OPER, json={"alert_id": "no-such-alert",
                                                                         "action": "resolve"})
        assert resp.status == 404 and "error" in await resp.json()
    finally:
        await stranger.close()
        await owner.close()


async def test_unreachable_owner_is_503_not_404(host: FakeHost) -> None:
    stranger = await make_client(FakeHost(build_pipeline(PipelineOptions(bar_ms=1000))),
                                 peer_secret=PEER_SECRET)
    try:
        stranger.service.peers = lambda: ["http://127.0.0.1:9"]  # discard port: nobody listens
        resp = await stranger.post("/api/v1/alerts", headers=OPER, json={"alert_id": "abc",
                                                                         "action": "acknowledge"})
        assert resp.status == 503 and "did not answer" in (await resp.json())["error"]
        # a request forwarded once (signed by a peer) is answered where it lands (no ping-pong)
        from streams.api.peer_auth import PeerSigner

        data = b'{"alert_id": "abc", "action": "acknowledge"}'
        target = str(stranger.make_url("")).rstrip("/")
        signed = PeerSigner(PEER_SECRET.encode()).sign("POST", target, "/api/v1/alerts", data,
                                                       forwarded_by="http://127.0.0.1:1", actor="olga",
                                                       role="operator")
        resp = await stranger.post("/api/v1/alerts", headers={**signed, "Content-Type": "application/json"},
                                   data=data)
        assert resp.status == 404
    finally:
        await stranger.close()


async def test_a_stale_copy_after_a_rebalance_is_not_acted_on(host: FakeHost) -> None:
    """The worker still tracks the alert but no longer owns its partition: the owner acts."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[tuple[str, dict[str, Any]]] = []

    async def owner_api(request: web.Request) -> web.Response:
        seen.append((request.headers.get("X-MevRisk-Actor", ""), await request.json()))
        return web.json_response({"message": "acknowledged by the owner"})

    owner_app = web.Application()
    owner_app.router.add_post("/api/v1/alerts", owner_api)
    owner = TestServer(owner_app)
    await owner.start_server()
    stale = await make_client(host, peer_secret=PEER_SECRET)
    host.pipeline.owned_partitions = frozenset({99})  # its inputs arrived on partition 0
    try:
        stale.service.peers = lambda: [str(owner.make_url("")).rstrip("/")]
        alert = host.pipeline.alerts.alerts()[0]
        resp = await stale.post("/api/v1/alerts", headers=OPER, json={"alert_id": alert.fingerprint,
                                                                      "action": "acknowledge"})
        assert resp.status == 200 and (await resp.json())["message"] == "acknowledged by the owner"
        assert seen == [("olga", {"alert_id": alert.fingerprint, "action": "acknowledge"})]
        assert host.published == [] and not host.pipeline.alerts.alerts()[0].acknowledged
    finally:
        host.pipeline.owned_partitions = None
        await stale.close()
        await owner.close()

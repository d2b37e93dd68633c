"""The API on the Faust web server: the wiring on a real Faust app, schemathesis against the
OpenAPI document of a running worker on a real broker, two workers answering for every
portfolio (whichever owns its partition) and acting on each other's alerts (acknowledge
forwarded to the owner, silences followed by every worker), and notification delivery
outcomes listed by the API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.integration.conftest import Env, Worker, produce, run, wait_until
from tests.integration.test_notify_kafka import _Hook, webhook_receiver  # noqa: F401 - fixture
from tests.unit.api.conftest import BEARER, FakeHost, base, host, settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
ADMIN, VIEWER = "it-admin-token-0001", "it-viewer-token-001"
TOKENS = {ADMIN: {"role": "admin", "name": "it-admin"}, VIEWER: "viewer"}
PEER_SECRET = "integration-test-peer-secret"
"""Signs the requests the test workers forward to each other (MEVRISK_PEER_SECRET)."""


async def test_register_views_on_a_real_faust_app(host: FakeHost) -> None:  # noqa: F811
    from streams.api import register_views

    app = faust.App("api-test", broker="kafka://127.0.0.1:1", store="memory://", web_in_thread=False)
    service = register_views(app, host, settings(replicate_snapshots=False))
    assert service is not None
    assert register_views(app, host, settings()) is None  # idempotent
    app.web.init_server()  # Faust's own "/" index is applied after ours: ours must win
    client = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    try:
        page = await client.get("/")
        assert page.status == 200 and "MEV Risk Stream" in await page.text()
        assert (await client.get("/api/v1/risk/overview")).status == 401
        assert (await client.get("/api/v1/risk/overview", headers=BEARER["viewer"])).status == 200
        alert = host.pipeline.alerts.alerts()[0]
        resp = await client.post("/api/v1/alerts", headers=BEARER["operator"],
                                 json={"alert_id": alert.id, "action": "acknowledge"})
        assert resp.status == 200
        resp = await client.delete("/api/v1/alerts", headers=BEARER["admin"])
        assert resp.status == 404 and "no endpoint" in (await resp.json())["error"]
    finally:
        await client.close()


# ---- real workers -----------------------------------------------------------------------------
def get(worker: Worker, path: str, token: str = VIEWER) -> tuple[int, Any]:
    return call(worker, "GET", path, token=token)[:2]


def call(worker: Worker, method: str, path: str, body: Any = None,
         token: str = VIEWER) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of one request to ``worker``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


@pytest.fixture
def start_api_worker(start_worker: Callable[..., Worker]) -> Callable[..., Worker]:
    """Workers of one consumer group with 1 s bars and the test tokens configured."""

    def start(**overrides: str) -> Worker:
        return start_worker(MEVRISK_BAR_MS="1000", MEVRISK_API_TOKENS=json.dumps(TOKENS),
                            MEVRISK_PEER_SECRET=PEER_SECRET, **overrides)

    return start


def _feed(env: Env, tmp_path: Path, duration_s: int = 70) -> None:
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "150", "--duration", str(duration_s),
                "--start-ms", str(START_MS), "--incident", "flash-crash@30s/20s", "--record", str(recording))
    env.mevrisk("replay", str(recording), "--pace", "fast")


def test_schemathesis_against_a_running_worker(env: Env, start_api_worker, tmp_path: Path) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

    worker = start_api_worker(MEVRISK_API_RATE_PER_SEC="10000", MEVRISK_API_RATE_BURST="10000")
    _feed(env, tmp_path)
    wait_until(lambda: get(worker, "/api/v1/risk/overview")[0] == 200, 60, "a snapshot through the API")
    base_url = f"http://127.0.0.1:{worker.web_port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/stream":
            continue  # an endless response; covered by the unit tests and the browser test

        @hsettings(max_examples=15, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
            case.validate_response(response, checks=checks)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    from streams.api.openapi import document

    documented = {f"{m.upper()} {p}" for p, ops in document()["paths"].items() for m in ops}
    # schemathesis leaves out the document's own path when it loads the schema from it
    assert set(tested) >= documented - {"GET /api/v1/stream", "GET /api/v1/openapi.json"}
    worker.assert_healthy()


def test_two_workers_answer_for_every_portfolio(env: Env, start_api_worker, tmp_path: Path) -> None:
    first = start_api_worker()
    second = start_api_worker()
    # the group is formed (each worker knows the other's web URL) before the input arrives, so
    # each portfolio is processed by one worker only
    def peer_ports(worker: Worker) -> list[str]:
        return [url.rsplit(":", 1)[-1] for url in get(worker, "/api/v1/health")[1]["peers"]]

    for worker, peer in ((first, second), (second, first)):
        wait_until(lambda w=worker, p=peer: peer_ports(w) == [str(p.web_port)], 90,
                   f"the consumer group seen by :{worker.web_port}")
    _feed(env, tmp_path, duration_s=40)

    def both_answer() -> bool:
        return all(get(w, f"/api/v1/risk/overview?portfolio={p}")[0] == 200
                   for w in (first, second) for p in ("alpha", "beta"))

    wait_until(both_answer, 90, "both workers answering for both portfolios")
    local = [set(get(w, "/api/v1/health")[1]["portfolios"]["local"]) for w in (first, second)]
    assert local[0] | local[1] == {"alpha", "beta"}
    # a snapshot published by some other worker (no pipeline here has seen "gamma") is served
    # by both from the replicated view of risk.snapshots
    snapshot = {"portfolio": "gamma", "ts_ms": START_MS + 5_000, "rating": "HIGH", "var_95_usd": 123.0,
                "total_exposure_usd": 1_000.0, "positions": []}
    run(produce(env.bootstrap, [(env.topic("risk.snapshots"), b"gamma", json.dumps(snapshot).encode())]))
    for worker in (first, second):
        wait_until(lambda w=worker: get(w, "/api/v1/risk/overview?portfolio=gamma")[0] == 200, 30,
                   "the replicated snapshot of portfolio gamma")
        body = get(worker, "/api/v1/risk/overview?portfolio=gamma")[1]
        assert body["portfolio_risk_rating"] == "HIGH" and body["var_95"] == 123.0
        assert "gamma" not in get(worker, "/api/v1/health")[1]["portfolios"]["local"]
    for worker in (first, second):
        status, body = get(worker, "/api/v1/risk/positions?portfolio=beta")
        assert status == 200 and body["positions"]
        assert get(worker, "/api/v1/alerts")[0] == 200
    _act_on_the_other_workers_alert(first, second)


def _owned_alert(workers: tuple[Worker, Worker]) -> tuple[Worker, Worker, dict[str, Any]]:
    """(owner, other, alert): an unresolved portfolio alert and the worker whose partition holds it."""
    for owner, other in (workers, workers[::-1]):
        local = set(get(owner, "/api/v1/health")[1]["portfolios"]["local"])
        local -= set(get(other, "/api/v1/health")[1]["portfolios"]["local"])
        for alert in get(owner, "/api/v1/alerts?unresolved_only=true&limit=1000")[1]["alerts"]:
            if alert["state"] == "firing" and alert.get("portfolio") in local:
                return owner, other, alert
    return None  # type: ignore[return-value]


def _state_on(worker: Worker, alert_id: str) -> str | None:
    rows = get(worker, "/api/v1/alerts?limit=1000")[1]["alerts"]
    return next((a["state"] for a in rows if a["id"] == alert_id), None)


def _act_on_the_other_workers_alert(first: Worker, second: Worker) -> None:
    owner, other, alert = wait_until(lambda: _owned_alert((first, second)), 90, "a firing portfolio alert")
    labels = alert.get("labels") or {}
    matchers = {"alertname": labels.get("alertname", alert["rule_name"]), "portfolio": alert["portfolio"]}
    # a silence posted to the worker that does not own the alert silences it on its owner
    status, body, _ = call(other, "POST", "/api/v1/silences", {"matchers": matchers, "duration_secs": 3600,
                                                                "comment": "it"}, token=ADMIN)
    assert status == 201, body
    silence_id = body["id"]
    wait_until(lambda: silence_id in {s["id"] for s in get(owner, "/api/v1/silences")[1]["silences"]}, 30,
               "the silence followed by the owner")
    for worker in (owner, other):
        wait_until(lambda w=worker: _state_on(w, alert["id"]) == "silenced", 60,
                   f"the alert silenced as seen by :{worker.web_port}")
    # acknowledge through the worker that does not own it: forwarded to the owner, audited with the actor
    status, body, headers = call(other, "POST", "/api/v1/alerts",
                                 {"alert_id": alert["id"], "action": "acknowledge", "comment": "it"},
                                 token=ADMIN)
    assert status == 200, body
    assert body["actor"] == "it-admin" and headers.get("X-MevRisk-Answered-By", "").endswith(
        f":{owner.web_port}")
    for worker in (owner, other):
        wait_until(lambda w=worker: _state_on(w, alert["id"]) == "acknowledged", 30,
                   f"the acknowledgement as seen by :{worker.web_port}")
        row = next(a for a in get(worker, "/api/v1/alerts?limit=1000")[1]["alerts"] if a["id"] == alert["id"])
        assert row["acknowledged_by"] == "it-admin"
    unknown = {"alert_id": "no-such-alert", "action": "resolve"}
    status, body, _ = call(other, "POST", "/api/v1/alerts", unknown, token=ADMIN)
    assert status == 404 and "error" in body
    # expiring the silence on the owner expires it on the other worker too
    assert call(owner, "DELETE", f"/api/v1/silences/{silence_id}", token=ADMIN)[0] == 200
    wait_until(lambda: silence_id not in {s["id"] for s in get(other, "/api/v1/silences")[1]["silences"]},
               30, "the expiry followed by the other worker")
    for worker in (owner, other):
        worker.assert_healthy()
        assert "Traceback" not in worker.log.read_text(errors="replace")


def test_delivery_outcomes_listed_by_every_worker(env: Env, webhook_receiver,  # noqa: F811 - fixture
                                                  start_api_worker, tmp_path: Path) -> None:
    """Any worker lists the delivery outcomes (the receiver outlives the workers)."""
    channels = tmp_path / "channels.yaml"
    channels.write_text(json.dumps({
        "channels": {"webhook": {
            "type": "webhook", "url": f"http://127.0.0.1:{webhook_receiver.server_port}/hook",
            "enabled": True, "timeout_secs": 5, "max_attempts": 3,
            "backoff": {"initial_secs": 0.1, "multiplier": 2, "max_secs": 1}}},
        "routes": [{"channels": ["webhook"]}],
        "grouping": {"group_by": ["alertname", "portfolio"], "group_wait_secs": 0, "group_interval_secs": 0},
        "digest": {"enabled": False},
    }))
    workers = [start_api_worker(MEVRISK_CHANNELS_FILE=str(channels), MEVRISK_IDLE_HEARTBEAT_SECS="3")
               for _ in range(2)]
    _feed(env, tmp_path, duration_s=70)
    wait_until(lambda: _Hook.received, 120, "a webhook delivery")

    def delivered(worker: Worker) -> list[dict[str, Any]]:
        status, body = get(worker, "/api/v1/deliveries?channel=webhook&outcome=delivered")
        assert status == 200, body
        return body["deliveries"]

    for worker in workers:
        rows = wait_until(lambda w=worker: delivered(w), 60, f"the delivery listed by :{worker.web_port}")
        row = rows[0]
        sent = json.dumps([orjson.loads(body) for _, body in _Hook.received])  # received before recorded
        assert row["channel"] == "webhook" and row["channel_type"] == "webhook" and row["attempt"] >= 1
        assert row["alert_ids"] and row["fingerprints"] and row["error"] is None
        assert row["latency_secs"] >= 0 and row["ts_ms"] > 0 and row["event_ts_ms"] >= START_MS
        assert row["timestamp"].endswith("Z") and row["alert_ids"][0] in sent
        by_alert = get(worker, f"/api/v1/deliveries?alert_id={row['fingerprints'][0]}&limit=5")[1]
        assert row["batch_id"] in {d["batch_id"] for d in by_alert["deliveries"]}
        assert get(worker, "/api/v1/deliveries?outcome=lost")[0] == 400
    for worker in workers:
        worker.assert_healthy()

"""The API on the Faust web server: the wiring on a real Faust app, schemathesis against the
OpenAPI document of a running worker on a real broker, and two workers answering for every
portfolio (whichever owns its partition)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.integration.conftest import Env, Worker, produce, run, wait_until
from tests.unit.api.conftest import BEARER, FakeHost, base, host, settings  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
ADMIN, VIEWER = "it-admin-token-0001", "it-viewer-token-001"
TOKENS = {ADMIN: {"role": "admin", "name": "it-admin"}, VIEWER: "viewer"}


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
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def start_api_worker(start_worker: Callable[..., Worker]) -> Callable[..., Worker]:
    """Workers of one consumer group with 1 s bars and the test tokens configured."""

    def start(**overrides: str) -> Worker:
        return start_worker(MEVRISK_BAR_MS="1000", MEVRISK_API_TOKENS=json.dumps(TOKENS), **overrides)

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
    assert worker.proc.poll() is None


def test_two_workers_answer_for_every_portfolio(env: Env, start_api_worker, tmp_path: Path) -> None:
    first = start_api_worker()
    second = start_api_worker()
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

"""Issue 12, item 6 (the API's part): ``/metrics`` names every portfolio and its figures, so
``MEVRISK_METRICS_TOKEN`` can close it; the web server answers only requests naming an allowed
``Host`` (DNS rebinding: a page of another site whose name resolves to 127.0.0.1 must not read a
loopback worker); a worker whose reads are open to anonymous callers refuses to start on a
non-loopback bind unless ``MEVRISK_API_ALLOW_OPEN_READS`` says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.api import register_views
from streams.api.auth import ApiConfigError
from streams.api.config import get_api_settings
from tests.unit.api.conftest import BEARER, FakeHost, base, host, settings  # noqa: F401 - fixtures

METRICS_TOKEN = "security-test-metrics-token"
VIEWER = BEARER["viewer"]


def _app(bind: str = "127.0.0.1", advertised: str = "127.0.0.1") -> faust.App:
    return faust.App("side-doors-test", broker="kafka://127.0.0.1:1", store="memory://", web_in_thread=False,
                     web_host=advertised, web_bind=bind)


async def _client(app: faust.App) -> TestClient:
    app.web.init_server()
    client = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    return client


async def test_the_host_header_must_be_allowed(host: FakeHost) -> None:  # noqa: F811
    app = _app(advertised="risk-worker-1.internal")
    register_views(app, host, settings(allowed_hosts="risk.example.org, dash.example.org"))
    client = await _client(app)
    try:
        path = "/api/v1/risk/overview"
        for name in ("evil.example", "evil.example:6066", "127.0.0.1.evil.example"):
            resp = await client.get(path, headers={**VIEWER, "Host": name})
            assert resp.status == 403, name
            assert "MEVRISK_ALLOWED_HOSTS" in (await resp.json())["error"]
        assert (await client.get("/", headers={"Host": "evil.example"})).status == 403  # open pages too
        for name in ("127.0.0.1:6066", "localhost", "LOCALHOST:1", "[::1]:6066",
                     "risk-worker-1.internal:6066", "risk.example.org", "dash.example.org:443"):
            resp = await client.get(path, headers={**VIEWER, "Host": name})
            assert resp.status == 200, name
    finally:
        await client.close()


@pytest.mark.parametrize(("overrides", "refused"), [
    ({"tokens": ""}, True),                                   # no token: every read is open
    ({"anonymous_reads": True}, True),                        # tokens, but reads need none
    ({"tokens": "", "allow_open_reads": True}, False),        # said so explicitly
    ({}, False),                                              # reads need a token
])
def test_open_reads_on_a_public_bind_refuse_to_start(host: FakeHost, overrides: dict[str, Any],  # noqa: F811
                                                     refused: bool) -> None:
    app = _app(bind="0.0.0.0")  # never bound: the check runs first
    if refused:
        with pytest.raises(ApiConfigError, match="MEVRISK_API_ALLOW_OPEN_READS"):
            register_views(app, host, settings(**overrides))
    else:
        assert register_views(app, host, settings(**overrides)) is not None
    # on loopback open reads are the documented default
    assert register_views(_app(bind="127.0.0.1"), host, settings(**overrides)) is not None


@pytest.fixture
def metrics_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MEVRISK_METRICS_TOKEN", METRICS_TOKEN)
    get_api_settings.cache_clear()
    yield METRICS_TOKEN
    get_api_settings.cache_clear()


@pytest.fixture
async def worker_web() -> AsyncIterator[TestClient]:
    """The worker's own Faust app with its ``/metrics`` view (``streams.web``)."""
    import streams.web  # noqa: F401 - registers /metrics on the app
    from streams.app import app

    client = await _client(app)
    yield client
    await client.close()


async def test_metrics_need_the_metrics_token_when_set(metrics_token: str, worker_web: TestClient) -> None:
    resp = await worker_web.get("/metrics")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "mevrisk_" not in await resp.text()
    for header in ("Bearer wrong-token", f"Basic {metrics_token}", "", metrics_token):
        assert (await worker_web.get("/metrics", headers={"Authorization": header})).status == 401, header
    resp = await worker_web.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert resp.status == 200 and "mevrisk_" in await resp.text()

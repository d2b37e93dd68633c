"""Auth matrix: every route x every caller (none, bad token, viewer, operator, admin)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from streams.api.auth import ApiConfigError, RateLimiter, Role, TokenStore, load_token_mapping
from streams.api.views import ROUTES, Route
from tests.unit.api.conftest import BEARER, REPORT_DATE, TOKENS, FakeHost, make_client

CALLERS = ("none", "bad", "viewer", "operator", "admin")
ROLE_OF = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def _request(route: Route, host: FakeHost) -> tuple[str, dict[str, Any] | None]:
    """A concrete, valid request for the route."""
    path = route.path.replace("{name}", "app.js").replace("{silence_id}", "0000000000000000")
    path = path.replace("{tail:.*}", "no/such/thing")
    if route.handler in ("daily_report", "daily_report_link"):
        path += f"?date={REPORT_DATE}&format=json"
    alert = host.pipeline.alerts.alerts()[0]
    bodies: dict[str, dict[str, Any]] = {
        "act_on_alert": {"alert_id": alert.id, "action": "acknowledge", "comment": "on it"},
        "add_silence": {"matchers": {"alertname": "HighVaR95"}, "duration_secs": 60},
        "command": {"scope": "strategy:jit-univ3", "command": "HALT", "reason": "test"},
    }
    return path, bodies.get(route.handler)


def expected(route: Route, caller: str) -> set[int]:
    if route.handler == "not_found":
        return {404}
    if route.role is None:
        return {200}
    if caller in ("none", "bad"):
        return {401}
    if not ROLE_OF[caller].allows(route.role):
        return {403}
    if route.handler == "delete_silence":
        return {404}  # allowed, but no such silence
    if route.handler == "predictions":
        return {200, 404}  # allowed; 404 while no anomaly scorer has scored the portfolio
    return {200, 201}


MATRIX = [(r, c) for r in ROUTES for c in CALLERS]


@pytest.mark.parametrize(("route", "caller"), MATRIX,
                         ids=[f"{r.method} {r.path} as {c}" for r, c in MATRIX])
async def test_auth_matrix(host: FakeHost, route: Route, caller: str) -> None:
    client = await make_client(host)
    try:
        path, body = _request(route, host)
        resp = await client.request(route.method, path, json=body, headers=BEARER[caller])
        try:
            assert resp.status in expected(route, caller), await resp.text()
            if resp.status in (401, 403):
                assert resp.content_type == "application/json"
                assert "error" in await resp.json()
            if resp.status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Access-Control-Allow-Origin" not in resp.headers  # CORS off
        finally:
            resp.close()
    finally:
        await client.close()


async def test_without_tokens_reads_are_open_and_changes_refused(host: FakeHost) -> None:
    client = await make_client(host, tokens="")
    try:
        who = await (await client.get("/api/v1/whoami")).json()
        assert who == {"name": "anonymous", "role": "viewer", "anonymous": True, "tokens_configured": False}
        assert (await client.get("/api/v1/risk/overview")).status == 200
        alert = host.pipeline.alerts.alerts()[0]
        resp = await client.post("/api/v1/alerts", json={"alert_id": alert.id, "action": "acknowledge"})
        assert resp.status == 403
        assert "no API tokens are configured" in (await resp.json())["error"]
        halt = {"scope": "global", "command": "HALT", "reason": "x"}
        resp = await client.post("/api/v1/controls", json=halt, headers=BEARER["admin"])
        assert resp.status == 401  # a token nobody configured is unknown
        assert host.published == []
    finally:
        await client.close()


async def test_anonymous_reads_with_tokens_configured(host: FakeHost) -> None:
    client = await make_client(host, anonymous_reads=True)
    try:
        assert (await client.get("/api/v1/risk/overview")).status == 200
        alert = host.pipeline.alerts.alerts()[0]
        resp = await client.post("/api/v1/alerts", json={"alert_id": alert.id, "action": "acknowledge"})
        assert resp.status == 401, "changes still need a token"
        resp = await client.post("/api/v1/alerts", json={"alert_id": alert.id, "action": "acknowledge"},
                                 headers=BEARER["operator"])
        assert resp.status == 200
    finally:
        await client.close()


async def test_malformed_authorization_header_is_401(client) -> None:
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "token"):
        resp = await client.get("/api/v1/health", headers={"Authorization": header})
        assert resp.status == 401
        assert "error" in await resp.json()


async def test_tokens_never_reach_the_log(host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client(host)
    try:
        alert = host.pipeline.alerts.alerts()[0]
        await client.post("/api/v1/alerts", json={"alert_id": alert.id, "action": "acknowledge"},
                          headers=BEARER["operator"])
        await client.get("/api/v1/health", headers=BEARER["bad"])
        await client.post("/api/v1/controls", json={"scope": "nope", "command": "HALT", "reason": "x"},
                          headers=BEARER["admin"])
    finally:
        await client.close()
    text = caplog.text + repr(client.service.tokens)
    assert "olga" in caplog.text  # the actor is logged ...
    for token in (*TOKENS, "not-a-known-token"):
        assert token not in text  # ... never a token


async def test_rate_limit_per_token(host: FakeHost) -> None:
    client = await make_client(host, rate_per_sec=0.01, rate_burst=2)
    try:
        statuses = [(await client.get("/api/v1/whoami", headers=BEARER["viewer"])).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        resp = await client.get("/api/v1/whoami", headers=BEARER["viewer"])
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"] == "rate limit exceeded"
        # another token has its own bucket
        assert (await client.get("/api/v1/whoami", headers=BEARER["admin"])).status == 200
    finally:
        await client.close()


async def test_failed_logins_are_rate_limited_per_address(host: FakeHost) -> None:
    client = await make_client(host, rate_per_sec=0.01, rate_burst=3)
    try:
        statuses = [(await client.get("/api/v1/health", headers=BEARER["bad"])).status for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
    finally:
        await client.close()


async def test_body_size_limit(host: FakeHost) -> None:
    client = await make_client(host, max_body_bytes=200)
    try:
        body = {"alert_id": "x" * 300, "action": "acknowledge"}
        resp = await client.post("/api/v1/alerts", json=body, headers=BEARER["operator"])
        assert resp.status == 413
        assert "error" in await resp.json()
    finally:
        await client.close()


def test_token_store_config_errors() -> None:
    with pytest.raises(ApiConfigError, match="unknown API role"):
        TokenStore.from_mapping({"abcdefgh12": "root"})
    with pytest.raises(ApiConfigError, match="8\\+ characters"):
        TokenStore.from_mapping({"short": "viewer"})
    with pytest.raises(ApiConfigError, match="not valid JSON"):
        load_token_mapping("{nope", None)
    with pytest.raises(ApiConfigError, match="JSON object"):
        load_token_mapping("[1]", None)


def test_tokens_file_merges_with_environment(tmp_path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  file-token-0001: {role: admin, name: fiona}\n")
    store = TokenStore.from_mapping(load_token_mapping('{"env-token-0001": "viewer"}', path))
    assert store.identify("file-token-0001").name == "fiona"
    assert store.identify("env-token-0001").role is Role.VIEWER
    assert "file-token" not in repr(store)


def test_rate_limiter_forgets_oldest_keys() -> None:
    t = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2, clock=lambda: t[0])
    assert limiter.allow("a")[0] and limiter.allow("b")[0] and limiter.allow("c")[0]
    assert not limiter.allow("c")[0]
    assert limiter.allow("a")[0]  # "a" was forgotten: a fresh bucket

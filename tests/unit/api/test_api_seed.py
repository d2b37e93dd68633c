"""The seed dashboard's unversioned API and the seed's names and units, over the real pure
pipeline: each field checked against the snapshot it comes from, in the seed's meaning."""

from __future__ import annotations

import pytest

from agents.assembly import PipelineOptions, build_pipeline
from agents.audit.chain import AuditChain
from agents.source_errors import SourceErrors
from tests.unit.api.conftest import BEARER, FakeHost, make_client

VIEWER = BEARER["viewer"]


async def _json(client, path: str, status: int = 200) -> dict:
    resp = await client.get(path, headers=VIEWER)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_seed_risk_overview_and_var_data(client, host: FakeHost) -> None:
    snap = host.pipeline.latest_snapshots["alpha"]
    body = await _json(client, "/api/risk-overview")
    assert body["risk_rating"] == snap["rating"] and body["total_exposure"] == snap["total_exposure_usd"]
    assert (body["var_95"], body["var_99"]) == (snap["var_95_usd"], snap["var_99_usd"])
    assert body["max_concentration"] == snap["max_concentration"]
    assert body["correlation_risk"] == snap["correlation_risk"]
    assert body["active_alerts"] == len(host.pipeline.alerts.alerts())  # all unresolved
    assert body["last_update"].startswith("2026-01-01T00:01")
    assert body["risk_trend"][-1]["var_95"] == snap["var_95_usd"]
    var = await _json(client, "/api/var-data?portfolio=beta")
    beta = host.pipeline.latest_snapshots["beta"]
    assert var["expected_shortfall_95"] == beta["es_95_usd"]
    assert var["expected_shortfall_99"] == beta["es_99_usd"]
    assert "historical" in var["confidence_level"] and var["var_trend"][-1]["var_99"] == beta["var_99_usd"]


async def test_seed_positions_risk_percentage_is_a_fraction(client, host: FakeHost) -> None:
    snap = host.pipeline.latest_snapshots["beta"]
    body = await _json(client, "/api/positions?portfolio=beta")
    rows = body["positions"]
    assert body["total_positions"] == len(rows) == len(snap["positions"])
    for row in rows:
        fraction = row["risk_amount"] / snap["total_exposure_usd"]
        assert row["risk_percentage"] == pytest.approx(fraction)
        want = "HIGH" if fraction > 0.05 else "MEDIUM" if fraction > 0.02 else "LOW"
        assert row["risk_level"] == want
    assert body["high_risk_positions"] == sum(r["risk_level"] == "HIGH" for r in rows)
    # v1 says the same in the same unit (x 100 kept as risk_percent)
    v1 = {r["id"]: r for r in (await _json(client, "/api/v1/risk/positions?portfolio=beta"))["positions"]}
    for row in rows:
        assert v1[row["id"]]["risk_percentage"] == pytest.approx(row["risk_percentage"])
        assert v1[row["id"]]["risk_percent"] == pytest.approx(100 * row["risk_percentage"])


async def test_seed_stress_tests_use_seed_names_and_fractions(client, host: FakeHost) -> None:
    snap = host.pipeline.latest_snapshots["alpha"]
    body = await _json(client, "/api/stress-tests")
    assert "gas_price_spike" in body["scenarios"] and "gas_spike" not in body["scenarios"]
    gas = body["scenarios"]["gas_price_spike"]
    assert gas["total_impact"] == snap["stress"]["gas_spike"]["pnl_usd"]
    assert gas["impact_percentage"] == pytest.approx(gas["total_impact"] / snap["total_exposure_usd"])
    assert gas["scenario_description"].startswith("gas x5")
    worst = snap["worst_stress_scenario"]
    assert body["most_dangerous_scenario"] == ("gas_price_spike" if worst == "gas_spike" else worst)
    crash = body["scenarios"]["market_crash"]
    assert crash["worst_position"] == snap["stress"]["market_crash"]["worst_position"]["position_id"]
    one = await _json(client, "/api/stress-tests?scenario=gas_price_spike")
    assert list(one["scenarios"]) == ["gas_price_spike"]
    ours = await _json(client, "/api/stress-tests?scenario=gas_spike")
    assert list(ours["scenarios"]) == ["gas_price_spike"]
    assert "nope" in (await _json(client, "/api/stress-tests?scenario=nope", status=404))["error"]


async def test_seed_alerts_newest_first_with_counts_and_seed_severities(client, host: FakeHost) -> None:
    body = await _json(client, "/api/alerts")
    every = host.pipeline.alerts.alerts()
    assert body["total_alerts"] == len(every) and body["unresolved_alerts"] == len(every)
    assert len(body["alerts"]) == min(10, len(every))
    starts = [a["startsAt"] for a in body["alerts"]]
    assert starts == sorted(starts, reverse=True)
    assert len((await _json(client, "/api/alerts?limit=1"))["alerts"]) == 1
    high = await _json(client, "/api/alerts?severity=HIGH")
    assert high["alerts"] and all(a["severity"] == "high" for a in high["alerts"])
    assert high["total_alerts"] == sum(1 for a in every if a.severity == "high")


async def test_seed_endpoints_answer_no_data_before_any_snapshot() -> None:
    client = await make_client(FakeHost(build_pipeline(PipelineOptions(bar_ms=1000))))
    try:
        for path in ("/api/risk-overview", "/api/positions", "/api/var-data", "/api/stress-tests"):
            assert await _json(client, path) == {"status": "no_data"}
        assert (await _json(client, "/api/alerts"))["total_alerts"] == 0
    finally:
        await client.close()


async def test_seed_endpoints_need_the_viewer_role_like_v1(client) -> None:
    resp = await client.get("/api/positions")
    assert resp.status == 401


async def test_alerts_list_the_channels_that_delivered_them(client, host: FakeHost) -> None:
    alert = host.pipeline.alerts.alerts()[0]
    chain = AuditChain("notify")

    def delivery(channel: str, outcome: str, ts_ms: int) -> dict:
        return chain.append("delivery", {"channel": channel, "outcome": outcome, "attempt": 1,
                                         "alert_ids": [alert.id], "fingerprints": [alert.fingerprint],
                                         "ts_ms": ts_ms, "event_ts_ms": ts_ms}, ts_ms)

    client.service.hub.publish([("risk.audit", "notify", r) for r in (
        delivery("slack", "delivered", 1_000), delivery("sms", "failed", 2_000),
        delivery("email", "delivered", 3_000))])
    rows = {a["id"]: a for a in (await _json(client, "/api/v1/alerts?limit=1000"))["alerts"]}
    assert rows[alert.id]["notifications_sent"] == ["email", "slack"]
    others = [a for i, a in rows.items() if i != alert.id]
    assert others and all(a["notifications_sent"] == [] for a in others)
    seed = {a["id"]: a for a in (await _json(client, "/api/alerts?limit=1000"))["alerts"]}
    assert seed[alert.id]["notifications_sent"] == ["email", "slack"]


async def test_a_source_with_more_than_five_rejected_messages_is_error(host: FakeHost) -> None:
    errors = SourceErrors()
    host.source_errors = errors  # type: ignore[attr-defined]  # PipelineHost has one
    name = host.pipeline.sources()[0]["name"]
    errors.accepted(name)
    client = await make_client(host)
    try:
        for n in range(1, 8):
            assert errors.rejected(name)
            row = next(s for s in (await _json(client, "/api/v1/health"))["sources"] if s["name"] == name)
            assert row["error_count"] == n and row["consecutive_errors"] == n
            assert (row["status"] == "ERROR") == (n > 5)
        health = await _json(client, "/api/v1/health")
        assert name in health["stale_sources"] and health["services"]["data_pipeline"] == "degraded"
        errors.accepted(name)
        row = next(s for s in (await _json(client, "/api/v1/health"))["sources"] if s["name"] == name)
        assert row["status"] != "ERROR" and row["error_count"] == 7 and row["consecutive_errors"] == 0
        assert not errors.rejected("never-seen-source"), "names from rejected bytes alone are not tracked"
    finally:
        await client.close()

"""View logic over the real pure pipeline: seed field names, filters, mutations and what they
publish, rule reload, the event stream, the OpenAPI document and the Faust wiring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.api.openapi import document
from streams.api.views import ROUTES
from tests.unit.api.conftest import BEARER, FakeHost, make_client

VIEWER, OPER, ADMIN = BEARER["viewer"], BEARER["operator"], BEARER["admin"]

SEED_OVERVIEW = {"timestamp", "portfolio_risk_rating", "total_exposure", "var_95", "var_99",
                 "max_concentration", "correlation_risk", "active_positions", "alerts"}
SEED_POSITION = {"id", "type", "risk_amount", "risk_percentage", "exposure", "confidence"}
SEED_VAR = {"var_95", "var_99", "expected_shortfall_95", "expected_shortfall_99", "confidence_level",
            "timestamp"}


def _ack(alert_id: str) -> dict[str, str]:
    return {"alert_id": alert_id, "action": "acknowledge"}


async def _json(client, path: str, headers=VIEWER, status: int = 200) -> dict:
    resp = await client.get(path, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


# ---- reads ------------------------------------------------------------------------------
async def test_overview_of_one_portfolio_lists_them_all(client, host: FakeHost) -> None:
    body = await _json(client, "/api/v1/risk/overview?portfolio=alpha")
    assert set(body) >= SEED_OVERVIEW
    assert body["portfolio"] == "alpha" and body["portfolios"] == ["alpha", "beta"]
    snap = host.pipeline.latest_snapshots["alpha"]
    assert body["var_95"] == snap["var_95_usd"] and body["portfolio_risk_rating"] == snap["rating"]
    assert body["alerts"] == len(host.pipeline.alerts.alerts())
    beta = await _json(client, "/api/v1/risk/overview?portfolio=beta")
    assert beta["portfolio"] == "beta" and beta["total_exposure"] == \
        host.pipeline.latest_snapshots["beta"]["total_exposure_usd"]


async def test_unknown_portfolio_is_404_with_the_known_ones(client) -> None:
    body = await _json(client, "/api/v1/risk/var?portfolio=nope", status=404)
    assert "nope" in body["error"] and body["portfolios"] == ["alpha", "beta"]


async def test_no_data_yet_is_404_and_no_pipeline_is_503(base) -> None:
    from agents.assembly import PipelineOptions, build_pipeline

    empty = FakeHost(build_pipeline(PipelineOptions(bar_ms=1000)))
    client = await make_client(empty)
    try:
        assert "no risk snapshot yet" in (await _json(client, "/api/v1/risk/overview", status=404))["error"]
        assert (await _json(client, "/api/v1/strategies", status=404))["error"]
        alerts = await _json(client, "/api/v1/alerts")
        assert alerts["alerts"] == [] and alerts["total_alerts"] == 0
    finally:
        await client.close()
    client = await make_client(FakeHost(None))
    try:
        assert (await _json(client, "/api/v1/health", status=503))["error"]
    finally:
        await client.close()


async def test_positions_sorted_by_component_var(client) -> None:
    body = await _json(client, "/api/v1/risk/positions?portfolio=beta")
    rows = body["positions"]
    assert rows and set(rows[0]) >= SEED_POSITION
    assert [r["risk_amount"] for r in rows] == sorted((r["risk_amount"] for r in rows), reverse=True)
    assert body["total_positions"] == len(rows)


async def test_var_and_stress_and_backtest(client, host: FakeHost) -> None:
    var = await _json(client, "/api/v1/risk/var")
    assert set(var) >= SEED_VAR
    assert var["history"][-1]["var_99_usd"] == var["var_99"]
    stress = await _json(client, "/api/v1/stress-tests")
    snap = host.pipeline.latest_snapshots["alpha"]
    # ours, plus the seed's name of the gas scenario
    assert set(stress["stress_tests"]) == set(snap["stress"]) | {"gas_price_spike"}
    assert stress["stress_tests"]["gas_price_spike"]["alias_of"] == "gas_spike"
    assert stress["stress_tests"]["gas_price_spike"]["total_impact"] == snap["stress"]["gas_spike"]["pnl_usd"]
    worst = stress["stress_tests"][snap["worst_stress_scenario"]]
    assert {"total_impact", "impact_percentage", "position_impacts", "worst_position"} <= set(worst)
    assert worst["total_impact"] == snap["stress"][snap["worst_stress_scenario"]]["pnl_usd"]
    # the seed's unit: a fraction of the gross exposure
    assert worst["impact_percentage"] == pytest.approx(worst["total_impact"] / snap["total_exposure_usd"])
    assert worst["impact_percent"] == pytest.approx(100 * worst["impact_percentage"])
    backtest = await _json(client, "/api/v1/backtest")
    assert set(backtest["portfolios"]) == {"alpha", "beta"}
    assert "zone" in backtest["portfolios"]["alpha"]
    only = await _json(client, "/api/v1/backtest?portfolio=beta")
    assert set(only["portfolios"]) == {"beta"}


async def test_predictions_from_snapshot_anomaly(client, host: FakeHost) -> None:
    snap = host.pipeline.latest_snapshots["alpha"]
    saved = snap.pop("anomaly", None)
    assert saved is not None, "the fixture's pipeline runs its online models: alpha's snapshot is scored"
    try:
        body = await _json(client, "/api/v1/predictions", status=404)
        assert "anomaly scorer" in body["error"]
        snap["anomaly"] = {"portfolio_score": 0.8, "portfolio_is_anomaly": True, "portfolio_warm": True}
        body = await _json(client, "/api/v1/predictions")
        assert body["anomaly_detection"]["is_anomaly"] is True
        assert body["anomaly_detection"]["anomaly_score"] == 0.8
        assert body["risk_classification"]["predicted_risk_level"] == snap["rating"]
    finally:
        snap["anomaly"] = saved
    # the pipeline's online models scored it: their seed blocks as they are
    body = await _json(client, "/api/v1/predictions")
    assert body["anomaly_detection"] == saved["anomaly_detection"]
    assert body["risk_classification"] == saved["risk_classification"]
    assert body["alert_forecast"]["probability"] == saved["alert_probability"]


async def test_health_monitors_the_monitors(client, host: FakeHost) -> None:
    body = await _json(client, "/api/v1/health")
    assert set(body["services"]) == {"risk_engine", "alert_manager", "ml_predictor", "data_pipeline"}
    assert set(body["metrics"]) == {"total_predictions", "active_alerts", "models_loaded", "alert_rules"}
    assert body["watermark_ms"] == host.pipeline.watermark_ms
    assert {s["name"] for s in body["sources"]} == {"price-oracle", "gas-tracker", "liquidity-monitor"}
    assert body["pipeline"]["snapshots"] == host.pipeline.stats.snapshots
    assert body["metrics"]["alert_rules"] == len(host.pipeline.alerts.ruleset)
    models = host.pipeline.models
    assert models is not None, "the fixture's pipeline runs its online models"
    assert "models" in body
    assert body["metrics"]["total_predictions"] == models.total_predictions > 0
    assert body["services"]["ml_predictor"] == "up"


async def test_health_leaves_out_models_where_none_run(client, host: FakeHost) -> None:
    host.pipeline.models = None
    body = await _json(client, "/api/v1/health")
    assert "models" not in body
    body = await _json(client, "/api/v1/models", status=404)
    assert "no online models" in body["error"]


async def test_models_view_serves_feature_importance(client, host: FakeHost) -> None:
    from tests.unit.anomaly.test_importance import _train

    models = host.pipeline.models
    assert models is not None, "the fixture's pipeline runs its online models"
    # 100 s of data label nothing within the 15 min horizon: alpha gets a classifier that learned gas
    models.portfolios["alpha"].forecaster = _train("gas_price_gwei")
    body = await _json(client, "/api/v1/models")
    alpha = body["portfolios"]["alpha"]["risk_classification"]["feature_importance"]
    assert next(iter(alpha)) == "gas_price_gwei"
    assert body["total_predictions"] == models.total_predictions > 0
    assert set(body["portfolios"]) == set(models.portfolios)
    for name, m in models.portfolios.items():
        block = body["portfolios"][name]["risk_classification"]
        assert block["samples_labelled"] == m.forecaster.n_labelled
        importance = block["feature_importance"]
        if m.forecaster.n_labelled:  # the weights of a model that learned: one per input, summing to 1
            assert importance and abs(sum(importance.values()) - 1.0) < 1e-9
        else:
            assert importance == {}


async def test_strategies_carry_trading_state(client, host: FakeHost) -> None:
    # the fixture's crash no longer breaches the drawdown rule's 30,000 USD limit: halt by command
    host.pipeline.command("strategy:liq-aave-eth", "HALT", "test", "drawdown")
    body = await _json(client, "/api/v1/strategies")
    rows = {r["strategy"]: r for r in body["strategies"]}
    assert "liq-aave-eth" in rows
    assert rows["liq-aave-eth"]["trading_state"] == "HALTED"
    assert {"inclusion_rate", "revert_rate", "net_pnl_usd", "drawdown_usd"} <= set(rows["jit-univ3"])


# ---- alerts -------------------------------------------------------------------------------
async def test_alerts_filters_and_order(client, host: FakeHost) -> None:
    body = await _json(client, "/api/v1/alerts")
    assert body["filters"] == {"severity": None, "state": None, "portfolio": None,
                               "unresolved_only": False, "limit": 50}
    alerts = body["alerts"]
    assert len(alerts) == body["total_alerts"] == len(host.pipeline.alerts.alerts())
    starts = [a["startsAt"] for a in alerts]
    assert starts == sorted(starts, reverse=True)
    seed = {"id", "rule_name", "severity", "timestamp", "message", "data", "status", "acknowledged",
            "acknowledged_at", "resolved", "resolved_at", "escalated_from"}
    assert seed <= set(alerts[0])
    high = await _json(client, "/api/v1/alerts?severity=HIGH")
    assert high["alerts"] and all(a["severity"] == "high" for a in high["alerts"])
    beta = await _json(client, "/api/v1/alerts?portfolio=beta")
    assert beta["alerts"] and all(a["portfolio"] == "beta" for a in beta["alerts"])
    assert len((await _json(client, "/api/v1/alerts?limit=1"))["alerts"]) == 1
    assert (await _json(client, "/api/v1/alerts?state=resolved"))["alerts"] == []
    for bad in ("limit=0", "limit=x", "state=weird", "unresolved_only=maybe"):
        assert "error" in await _json(client, f"/api/v1/alerts?{bad}", status=400)


async def test_acknowledge_publishes_event_and_audit_with_actor(client, host: FakeHost) -> None:
    alert = host.pipeline.alerts.alerts()[0]
    resp = await client.post("/api/v1/alerts", headers=OPER,
                             json={"alert_id": alert.id, "action": "acknowledge", "comment": "looking"})
    assert resp.status == 200
    assert (await resp.json())["message"] == f"alert {alert.id} acknowledged"
    events = host.of("risk.alerts")
    assert events[-1]["transition"] == "acknowledged" and events[-1]["acknowledged_by"] == "olga"
    audit = host.of("risk.audit")
    assert audit[-1]["payload"]["acknowledged_by"] == "olga"
    listed = await _json(client, "/api/v1/alerts?state=acknowledged")
    assert [a["id"] for a in listed["alerts"]] == [alert.id]
    again = await client.post("/api/v1/alerts", headers=OPER, json=_ack(alert.id))
    assert "already" in (await again.json())["message"]


async def test_resolve_then_listed_as_resolved(client, host: FakeHost) -> None:
    alert = host.pipeline.alerts.alerts()[-1]
    resp = await client.post("/api/v1/alerts", headers=ADMIN,
                             json={"alert_id": alert.fingerprint, "action": "resolve", "comment": "fixed"})
    assert resp.status == 200, await resp.text()
    assert host.of("risk.alerts")[-1]["resolved_by"] == "ada"
    body = await _json(client, "/api/v1/alerts")
    states = {a["id"]: a["state"] for a in body["alerts"]}
    assert states[alert.id] == "resolved"
    unresolved = await _json(client, "/api/v1/alerts?unresolved_only=true")
    assert alert.id not in {a["id"] for a in unresolved["alerts"]}


@pytest.mark.parametrize(("body", "status"), [
    ({"alert_id": "0123456789abcdef", "action": "acknowledge"}, 404),
    ({"alert_id": "x", "action": "delete"}, 400),
    ({"action": "resolve"}, 400),
    ({"alert_id": 7, "action": "resolve"}, 400),
])
async def test_alert_action_errors(client, host: FakeHost, body: dict, status: int) -> None:
    resp = await client.post("/api/v1/alerts", headers=OPER, json=body)
    assert resp.status == status
    assert "error" in await resp.json()
    assert host.published == []


async def test_non_json_body_is_400(client) -> None:
    for data in (b"{not json", b"[1, 2]"):
        headers = {**OPER, "Content-Type": "application/json"}
        resp = await client.post("/api/v1/alerts", headers=headers, data=data)
        assert resp.status == 400


async def test_changes_wait_for_recovery(client, host: FakeHost) -> None:
    host.ready = asyncio.Event()  # streams.host sets it once the inputs are replayed
    alert = host.pipeline.alerts.alerts()[0]
    resp = await client.post("/api/v1/alerts", headers=OPER, json=_ack(alert.id))
    assert resp.status == 503 and "replaying" in (await resp.json())["error"]
    assert (await _json(client, "/api/v1/health"))["status"] == "recovering"
    host.ready.set()
    assert (await client.post("/api/v1/alerts", headers=OPER, json=_ack(alert.id))).status == 200


# ---- silences, controls, rules ---------------------------------------------------------------
async def test_silence_lifecycle(client, host: FakeHost) -> None:
    resp = await client.post("/api/v1/silences", headers=OPER, json={
        "matchers": ['alertname="HighVaR95"', {"portfolio": "beta"}], "duration_secs": 600,
        "comment": "deploy"})
    assert resp.status == 201, await resp.text()
    sid = (await resp.json())["id"]
    listed = await _json(client, "/api/v1/silences")
    assert [s["id"] for s in listed["silences"]] == [sid]
    assert listed["silences"][0]["author"] == "olga" and listed["silences"][0]["active"] is True
    assert host.of("risk.audit")[-1]["payload"]["action"] == "add"
    assert (await client.delete(f"/api/v1/silences/{sid}", headers=OPER)).status == 200
    assert (await client.delete(f"/api/v1/silences/{sid}", headers=OPER)).status == 404
    assert (await _json(client, "/api/v1/silences"))["silences"] == []
    for bad in ({"matchers": []}, {"matchers": ["bad matcher"]},
                {"matchers": {"a": "b"}, "duration_secs": -5}, {"matchers": {"a": "b"}, "starts_ms": "soon"}):
        assert (await client.post("/api/v1/silences", headers=OPER, json=bad)).status == 400


async def test_controls_halt_and_resume(client, host: FakeHost) -> None:
    resp = await client.post("/api/v1/controls", headers=ADMIN,
                             json={"scope": "strategy:jit-univ3", "command": "halt", "reason": "manual test"})
    assert resp.status == 200, await resp.text()
    control = (await resp.json())["control"]
    assert control["state"] == "HALTED" and control["actor"] == "ada" and control["reason"] == "manual test"
    assert host.of("risk.controls")[-1] == control
    assert host.of("risk.audit")[-1]["kind"] == "control"
    states = (await _json(client, "/api/v1/controls"))["states"]
    assert states["strategy:jit-univ3"] == "HALTED"
    await client.post("/api/v1/controls", headers=ADMIN,
                      json={"scope": "strategy:jit-univ3", "command": "RESUME", "reason": "done"})
    assert "strategy:jit-univ3" not in (await _json(client, "/api/v1/controls"))["states"]
    for bad in ({"scope": "desk:1", "command": "HALT", "reason": "x"},
                {"scope": "global", "command": "PAUSE", "reason": "x"},
                {"scope": "global", "command": "HALT"}):
        assert (await client.post("/api/v1/controls", headers=ADMIN, json=bad)).status == 400


async def test_rules_list_and_reload(host: FakeHost, rules_copy: Path) -> None:
    client = await make_client(host, rules_path=rules_copy)
    try:
        rules = await _json(client, "/api/v1/rules")
        assert rules["total"] == len(host.pipeline.alerts.ruleset)
        high = next(r for r in rules["rules"] if r["name"] == "HighVaR95")
        assert high["condition"] == high["expr"] and high["cooldown_minutes"] == 60
        # invalid file: 400 with the problems, the old rules stay
        good = rules_copy.read_text()
        broken = good.replace("expr: snapshot.var_95_usd > 10000.0", "expr: snapshot.var_95_usd >")
        rules_copy.write_text(broken)
        resp = await client.post("/api/v1/rules/reload", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 400 and body["problems"] and "HighVaR95" in " ".join(body["problems"])
        assert len(host.pipeline.alerts.ruleset) == rules["total"]
        # valid file without HighVaR95: its alerts resolve, the reload is audited
        start = good.index("  - name: HighVaR95")
        end = good.index("  - name: HighConcentration")
        rules_copy.write_text(good[:start] + good[end:])
        resp = await client.post("/api/v1/rules/reload", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["removed"] == ["HighVaR95"] and body["rules"] == rules["total"] - 1
        assert body["alerts_resolved"] >= 1
        assert host.of("risk.audit")[-1]["payload"]["actor"] == "ada"
        assert all(e["resolved_by"] == "reload" for e in host.of("risk.alerts"))
    finally:
        await client.close()
        from agents.alerts.rules import load_rules
        from agents.assembly import DEFAULT_CONFIG_DIR

        host.pipeline.alerts.reload(load_rules(DEFAULT_CONFIG_DIR / "rules.yaml"), host.pipeline.watermark_ms)


# ---- live stream -------------------------------------------------------------------------------
async def _next_event(resp) -> tuple[str, str]:
    while True:
        block = (await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)).decode()
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line
                     and not line.startswith(":"))
        if "event" in lines:
            return lines["event"], lines["data"]


async def test_stream_carries_snapshots_and_alert_events(client, host: FakeHost) -> None:
    resp = await client.get("/api/v1/stream", headers=VIEWER)
    try:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        kind, data = await _next_event(resp)
        assert kind == "hello" and '"portfolios":["alpha","beta"]' in data
        hub = client.service.hub
        snap = dict(host.pipeline.latest_snapshots["beta"])
        hub.publish([("risk.snapshots", "beta", snap), ("risk.audit", "risk", {"seq": 1})])
        kind, data = await _next_event(resp)
        assert kind == "snapshot" and '"portfolio":"beta"' in data
        alert = host.pipeline.alerts.alerts()[0]
        await client.post("/api/v1/alerts", headers=OPER, json=_ack(alert.id))
        kind, data = await _next_event(resp)
        assert kind == "alert" and '"transition":"acknowledged"' in data
        hub.publish([("risk.snapshots", "beta", snap)])  # a duplicate (host + replica) is sent once
        history = await _json(client, "/api/v1/risk/var?portfolio=beta")
        assert len(history["history"]) == 1
    finally:
        resp.close()


async def test_stream_client_limit(host: FakeHost) -> None:
    client = await make_client(host, max_stream_clients=1)
    try:
        first = await client.get("/api/v1/stream", headers=VIEWER)
        second = await client.get("/api/v1/stream", headers=VIEWER)
        assert first.status == 200 and second.status == 503
        first.close()
    finally:
        await client.close()


# ---- documents and wiring -----------------------------------------------------------------------
def test_openapi_documents_every_route() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.")
    for route in ROUTES:
        if not route.path.startswith("/api/") or route.handler == "not_found":
            continue
        operation = doc["paths"][route.path][route.method.lower()]
        assert "200" in operation["responses"] or "201" in operation["responses"], route
        for code, response in operation["responses"].items():
            assert response["content"], (route, code)
    refs = {v for path in doc["paths"].values() for op in path.values()
            for r in op["responses"].values() for c in r["content"].values()
            for v in [c["schema"].get("$ref", "")] if v}
    for ref in refs:
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]


async def test_openapi_and_dashboard_are_served_open(client) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200 and (await resp.json())["info"]["title"] == "MEV Risk Stream API"
    page = await client.get("/")
    assert page.status == 200 and "rating-value" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert (await client.get("/dashboard/app.js")).content_type == "text/javascript"
    for bad in ("../views.py", ".hidden.js", "nope.js"):
        assert (await client.get(f"/dashboard/{bad}")).status == 404
    wrong = (("GET", "/api/v1/nope"), ("POST", "/api/v1/risk/overview"), ("PUT", "/api/v1/alerts"))
    for method, path in wrong:
        resp = await client.request(method, path)
        assert resp.status == 404 and "no endpoint" in (await resp.json())["error"]

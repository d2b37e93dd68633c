"""Acceptance (issue 13 section 3): a client written against the original design's API, endpoint by
endpoint from SEED_NOTES.md, runs unchanged against a live worker on a real broker (apart from
authentication: reads go without a token, as the original's did, with anonymous reads on; the one
change, acknowledging an alert, sends an operator token). Every original field is present and
checked for its original meaning against the worker's own figures."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Env, Worker, produce, run, wait_until
from tests.integration.test_api import call

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
OPERATOR = "it-seed-operator-01"
TOKENS = {OPERATOR: {"role": "operator", "name": "seed-client"}}
SEED_RATINGS = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
SEED_SCENARIOS = {"market_crash", "liquidity_crisis", "correlation_spike", "gas_price_spike"}

# ---- the original design's request and response shapes (SEED_NOTES.md) ------------------------
V1: dict[str, set[str]] = {
    "/api/v1/risk/overview": {"timestamp", "portfolio_risk_rating", "total_exposure", "var_95", "var_99",
                              "max_concentration", "correlation_risk", "active_positions", "alerts"},
    "/api/v1/risk/positions": {"positions", "total_positions", "total_exposure", "timestamp"},
    "/api/v1/risk/var": {"var_95", "var_99", "expected_shortfall_95", "expected_shortfall_99",
                         "confidence_level", "timestamp"},
    "/api/v1/alerts": {"alerts", "total_alerts", "filters"},
    "/api/v1/stress-tests": {"stress_tests", "timestamp"},
    "/api/v1/health": {"timestamp", "services", "metrics"},
}
V1_POSITION = {"id", "type", "risk_amount", "risk_percentage", "exposure", "confidence"}
V1_SCENARIO = {"total_impact", "impact_percentage", "position_impacts", "worst_position"}
V1_SERVICES = {"risk_engine", "alert_manager", "ml_predictor", "data_pipeline"}
V1_METRICS = {"total_predictions", "active_alerts", "models_loaded", "alert_rules"}
ALERT = {"id", "rule_name", "severity", "timestamp", "message", "data", "status", "notifications_sent",
         "acknowledged", "acknowledged_at", "resolved", "resolved_at", "escalated_from"}
DASHBOARD: dict[str, set[str]] = {
    "/api/risk-overview": {"risk_rating", "total_exposure", "var_95", "var_99", "max_concentration",
                           "correlation_risk", "last_update", "active_alerts", "risk_trend"},
    "/api/positions": {"positions", "total_positions", "high_risk_positions", "last_update"},
    "/api/alerts": {"alerts", "total_alerts", "unresolved_alerts"},
    "/api/var-data": {"var_95", "var_99", "expected_shortfall_95", "expected_shortfall_99",
                      "confidence_level", "var_trend", "last_update"},
    "/api/stress-tests": {"scenarios", "most_dangerous_scenario", "last_update"},
}
DASHBOARD_POSITION = {"id", "type", "risk_amount", "risk_percentage", "exposure", "risk_level"}
DASHBOARD_SCENARIO = {"total_impact", "impact_percentage", "worst_position", "scenario_description"}


class SeedClient:
    """What a client of the original API sends: plain GETs without a token, JSON POSTs."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def get(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.worker.web_port}{path}")  # no token
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def shape(self, path: str, fields: set[str]) -> dict[str, Any]:
        status, body = self.get(path)
        assert status == 200, (path, body)
        missing = fields - set(body)
        assert not missing, f"{path} lacks the original fields {sorted(missing)}"
        return body

    def act(self, alert_id: str, action: str) -> tuple[int, Any]:
        body = {"alert_id": alert_id, "action": action}
        status, answer, _ = call(self.worker, "POST", "/api/v1/alerts", body, token=OPERATOR)
        return status, answer


def _feed(env: Env, tmp_path: Path) -> None:
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "150", "--duration", "70", "--start-ms", str(START_MS),
                "--incident", "flash-crash@30s/20s", "--record", str(recording))
    env.mevrisk("replay", str(recording), "--pace", "fast")


def _rfc3339(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("Z") and value[4] == "-" and "T" in value


@pytest.fixture
def seed_worker(start_worker: Callable[..., Worker]) -> Worker:
    # tokens configured for the change; reads open, as the original API's were
    return start_worker(MEVRISK_BAR_MS="1000", MEVRISK_API_TOKENS=json.dumps(TOKENS),
                        MEVRISK_API_ANONYMOUS_READS="true", MEVRISK_API_RATE_PER_SEC="1000",
                        MEVRISK_API_RATE_BURST="1000")


def test_a_seed_client_works_unchanged_against_a_live_worker(env: Env, seed_worker: Worker,
                                                             tmp_path: Path) -> None:
    seed = SeedClient(seed_worker)
    # before any data: the dashboard API says no_data, the v1 reads 404 with a JSON error
    for path in ("/api/risk-overview", "/api/positions", "/api/var-data", "/api/stress-tests"):
        assert seed.get(path) == (200, {"status": "no_data"}), path
    status, body = seed.get("/api/v1/risk/var")
    assert status == 404 and "error" in body

    _feed(env, tmp_path)
    wait_until(lambda: seed.get("/api/v1/risk/var")[0] == 200, 90, "a snapshot through the API")
    wait_until(lambda: seed.get("/api/v1/alerts?unresolved_only=true")[1]["total_alerts"] > 0, 90,
               "an alert of the flash crash")
    wait_until(lambda: seed.get("/api/v1/health")[1]["watermark_ms"] >= START_MS + 60_000, 90,
               "the worker through the recording")

    _check_v1_reads(seed)
    _check_alerts_and_actions(seed)
    _check_dashboard_api(seed)
    _check_source_error_state(env, seed)
    seed_worker.assert_healthy()


def _check_v1_reads(seed: SeedClient) -> None:
    overview = seed.shape("/api/v1/risk/overview", V1["/api/v1/risk/overview"])  # the firm, all portfolios
    assert overview["portfolio_risk_rating"] in SEED_RATINGS and _rfc3339(overview["timestamp"])
    assert 0.0 <= overview["max_concentration"] <= 1.0 and 0.0 <= overview["correlation_risk"] <= 1.0
    unresolved = seed.get("/api/v1/alerts?unresolved_only=true&limit=1000")[1]["total_alerts"]
    assert overview["alerts"] == unresolved  # the count of unresolved alerts
    portfolio = overview["portfolios"][0]
    one_path = f"/api/v1/risk/overview?portfolio={portfolio}"

    def same_snapshot() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        # the worker keeps closing bars (the idle heartbeat): compare reads of one snapshot only
        one = seed.shape(one_path, V1["/api/v1/risk/overview"])
        positions = seed.shape(f"/api/v1/risk/positions?portfolio={portfolio}", V1["/api/v1/risk/positions"])
        var = seed.shape(f"/api/v1/risk/var?portfolio={portfolio}", V1["/api/v1/risk/var"])
        return (one, positions, var) if seed.get(one_path)[1] == one else None

    one, positions, var = wait_until(same_snapshot, 60, "three reads of one snapshot")
    rows = positions["positions"]
    assert rows and positions["total_positions"] == len(rows) == one["active_positions"]
    assert positions["total_exposure"] == one["total_exposure"] > 0
    for row in rows:
        assert set(row) >= V1_POSITION, sorted(V1_POSITION - set(row))
        # a fraction of the exposure, as in the seed (0.05 = 5 %)
        assert math.isclose(row["risk_percentage"], row["risk_amount"] / positions["total_exposure"],
                            rel_tol=1e-9, abs_tol=1e-12)
        assert 0.0 < row["confidence"] < 1.0

    assert (var["var_95"], var["var_99"]) == (one["var_95"], one["var_99"])
    assert var["expected_shortfall_95"] >= var["var_95"] and var["expected_shortfall_99"] >= var["var_99"]
    assert isinstance(var["confidence_level"], str) and var["confidence_level"]

    stress = seed.shape(f"/api/v1/stress-tests?portfolio={portfolio}", V1["/api/v1/stress-tests"])
    assert set(stress["stress_tests"]) >= SEED_SCENARIOS
    for name in SEED_SCENARIOS:
        scenario = stress["stress_tests"][name]
        assert set(scenario) >= V1_SCENARIO, (name, sorted(V1_SCENARIO - set(scenario)))
        assert math.isclose(scenario["impact_percentage"], scenario["total_impact"] / one["total_exposure"],
                            rel_tol=1e-9, abs_tol=1e-12)

    health = seed.shape("/api/v1/health", V1["/api/v1/health"])
    assert set(health["services"]) >= V1_SERVICES and set(health["metrics"]) >= V1_METRICS
    assert health["services"]["risk_engine"] == "up"
    assert health["metrics"]["active_alerts"] == unresolved and health["metrics"]["alert_rules"] > 0


def _check_alerts_and_actions(seed: SeedClient) -> None:
    body = seed.shape("/api/v1/alerts?limit=3&severity=HIGH&unresolved_only=true", V1["/api/v1/alerts"])
    assert body["filters"] == {**body["filters"], "severity": "HIGH", "unresolved_only": True, "limit": 3}
    assert len(body["alerts"]) <= 3
    assert all(a["severity"] == "high" and not a["resolved"] for a in body["alerts"])
    every = seed.get("/api/v1/alerts?limit=1000")[1]["alerts"]
    assert [a["timestamp"] for a in every] and all(set(a) >= ALERT for a in every), \
        sorted(ALERT - set(every[0]))
    starts = [a["startsAt"] for a in every]
    assert starts == sorted(starts, reverse=True)  # newest first
    target = next(a for a in every if not a["acknowledged"] and not a["resolved"])
    assert isinstance(target["notifications_sent"], list) and target["escalated_from"] is None
    assert target["message"] and isinstance(target["data"], dict)

    status, answer = seed.act(target["id"], "acknowledge")
    assert status == 200 and "message" in answer
    row = next(a for a in seed.get("/api/v1/alerts?limit=1000")[1]["alerts"] if a["id"] == target["id"])
    assert row["acknowledged"] is True and _rfc3339(row["acknowledged_at"])
    assert seed.act(target["id"], "snooze")[0] == 400
    status, answer = seed.act("no-such-alert", "resolve")
    assert status == 404 and "error" in answer


def _check_dashboard_api(seed: SeedClient) -> None:
    v1 = seed.get("/api/v1/risk/overview")[1]
    portfolio = v1["portfolios"][0]
    one = seed.get(f"/api/v1/risk/overview?portfolio={portfolio}")[1]
    overview = seed.shape("/api/risk-overview", DASHBOARD["/api/risk-overview"])
    assert overview["risk_rating"] == one["portfolio_risk_rating"] and overview["var_95"] == one["var_95"]
    assert overview["active_alerts"] == seed.get("/api/v1/alerts?unresolved_only=true&limit=1000")[1][
        "total_alerts"]
    assert _rfc3339(overview["last_update"]) and overview["risk_trend"]

    positions = seed.shape("/api/positions", DASHBOARD["/api/positions"])
    rows = positions["positions"]
    assert rows and positions["total_positions"] == len(rows)
    for row in rows:
        assert set(row) >= DASHBOARD_POSITION
        fraction = row["risk_percentage"]
        assert math.isclose(fraction, row["risk_amount"] / one["total_exposure"], rel_tol=1e-9, abs_tol=1e-12)
        assert row["risk_level"] == ("HIGH" if fraction > 0.05 else "MEDIUM" if fraction > 0.02 else "LOW")
    assert positions["high_risk_positions"] == sum(r["risk_level"] == "HIGH" for r in rows)

    alerts = seed.shape("/api/alerts", DASHBOARD["/api/alerts"])
    assert len(alerts["alerts"]) <= 10 and alerts["unresolved_alerts"] <= alerts["total_alerts"]
    assert all(set(a) >= ALERT for a in alerts["alerts"])

    var = seed.shape("/api/var-data", DASHBOARD["/api/var-data"])
    assert (var["var_95"], var["var_99"]) == (one["var_95"], one["var_99"]) and var["var_trend"]

    stress = seed.shape("/api/stress-tests", DASHBOARD["/api/stress-tests"])
    assert set(stress["scenarios"]) >= SEED_SCENARIOS
    assert all(set(s) >= DASHBOARD_SCENARIO for s in stress["scenarios"].values())
    # the most dangerous scenario is the one with the largest loss
    lowest = min(s["total_impact"] for s in stress["scenarios"].values())
    assert stress["scenarios"][stress["most_dangerous_scenario"]]["total_impact"] == lowest


def _check_source_error_state(env: Env, seed: SeedClient) -> None:
    """More than 5 consecutive rejected messages of a source: ERROR, with its error count."""
    def oracle() -> dict[str, Any]:
        return next(s for s in seed.get("/api/v1/health")[1]["sources"] if s["name"] == "price-oracle")

    assert oracle()["status"] != "ERROR" and oracle()["error_count"] == 0
    bad = json.dumps({"kind": "price", "source": "price-oracle", "ts_ms": "not-a-time"}).encode()
    run(produce(env.bootstrap, [(env.topic("mev.market.ticks"), b"ETH", bad)] * 8))
    wait_until(lambda: oracle()["error_count"] >= 8, 60, "the rejected ticks counted")
    row = oracle()
    assert row["status"] == "ERROR" and row["consecutive_errors"] >= 8
    assert "price-oracle" in seed.get("/api/v1/health")[1]["stale_sources"]

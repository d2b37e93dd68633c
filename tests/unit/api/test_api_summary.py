"""``GET /api/v1/alerts/summary`` over the real pure pipeline: counts by severity and state, MTTA,
MTTR and the seed's ``average_response_time``, checked against the alerts' own times."""

from __future__ import annotations

import pytest

from tests.unit.api.conftest import BEARER, FakeHost

VIEWER, OPER = BEARER["viewer"], BEARER["operator"]


async def _summary(client, query: str = "") -> dict:
    resp = await client.get("/api/v1/alerts/summary" + query, headers=VIEWER)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_summary_counts_and_response_times(client, host: FakeHost) -> None:
    alerts = host.pipeline.alerts.alerts()
    before = await _summary(client)
    assert before["total_alerts"] == len(alerts) == before["active_alerts"]
    assert before["by_state"]["firing"] + before["by_state"]["silenced"] == len(alerts)
    assert before["acknowledged_alerts"] == 0 and before["mtta_seconds"] is None
    assert before["average_response_time"] is None and before["mttr_seconds"] is None
    want_sev: dict[str, int] = {}
    for a in alerts:
        want_sev[a.severity] = want_sev.get(a.severity, 0) + 1
    assert before["by_severity"] == want_sev

    first, second = alerts[0], alerts[1]
    for alert, action in ((first, "acknowledge"), (second, "resolve")):
        body = {"alert_id": alert.id, "action": action}
        resp = await client.post("/api/v1/alerts", headers=OPER, json=body)
        assert resp.status == 200, await resp.text()
    client.service.hub.publish(host.published)  # what the worker publishes reaches the hub too
    wm = host.pipeline.watermark_ms
    after = await _summary(client)
    assert after["total_alerts"] == len(alerts)
    assert after["by_state"]["acknowledged"] == 1 and after["by_state"]["resolved"] == 1
    assert after["active_alerts"] == len(alerts) - 1
    assert after["mtta_seconds"] == pytest.approx((wm - first.starts_at_ms) / 1000)
    assert after["average_response_time"] == pytest.approx((wm - first.starts_at_ms) / 60_000, abs=1e-3)
    assert after["mttr_seconds"] == pytest.approx((wm - second.starts_at_ms) / 1000)
    assert after["mttr_seconds_by_severity"] == {second.severity: after["mttr_seconds"]}

    # the period filter: alerts that fired from the last one's start on
    last = max(a.starts_at_ms for a in alerts)
    recent = await _summary(client, f"?start_ms={last}")
    assert recent["total_alerts"] == sum(1 for a in alerts if a.starts_at_ms >= last)
    assert (await _summary(client, f"?end_ms={min(a.starts_at_ms for a in alerts)}"))["total_alerts"] == 0
    beta = await _summary(client, "?portfolio=beta")
    assert 0 < beta["total_alerts"] < len(alerts)
    resp = await client.get("/api/v1/alerts/summary?start_ms=soon", headers=VIEWER)
    assert resp.status == 400

"""A real Alertmanager (Debian's ``prometheus-alertmanager``) receives our alerts.

The test starts Alertmanager on a free loopback port with
``deploy/alertmanager/alertmanager.yml`` and its storage in ``tmp_path``, posts
alerts through the dispatcher's ``alertmanager`` channel, and reads them back
from ``GET /api/v2/alerts``. Skipped only when the binaries are not installed
(``apt-get install prometheus-alertmanager``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from agents.notify.config import parse_config
from agents.notify.delivery import Dispatcher, OutcomeRecord

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
needs_am = pytest.mark.skipif(
    AM_BIN is None,
    reason="Alertmanager binary not found: apt-get install prometheus-alertmanager",
)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(AMTOOL is None, reason="amtool not found: apt-get install prometheus-alertmanager")
def test_alertmanager_config_passes_amtool() -> None:
    assert AMTOOL is not None
    result = subprocess.run([AMTOOL, "check-config", str(AM_CONFIG)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[str]:
    assert AM_BIN is not None
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [AM_BIN, f"--config.file={AM_CONFIG}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                if proc.poll() is not None:
                    break
                try:
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("Alertmanager did not become ready in 10 s")
        if proc.poll() is not None:
            pytest.fail("Alertmanager exited: " + (tmp_path / "alertmanager.log").read_text())
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _event(n: int, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "event_id": f"am-evt-{n}", "id": f"am-alert-{n}", "fingerprint": f"am-fp-{n}",
        "rule": "var95_breach", "rule_name": "VaR95Breach", "transition": "firing",
        "status": "firing", "severity": "critical", "escalation_level": 0,
        "labels": {"alertname": "VaR95Breach", "portfolio": f"p{n}", "strategy": "arb-1"},
        "annotations": {"summary": f"VaR 95 above limit on p{n}", "description": "test"},
        "message": "VaR 95 above $10,000",
        "startsAt": _rfc3339(now - timedelta(minutes=2)), "endsAt": "0001-01-01T00:00:00Z",
        "ts_ms": int(now.timestamp() * 1000), "values": {"var_95_usd": 12500.0},
        "channels": ["alertmanager"], "notify": True,
    }
    event.update(overrides)
    return event


async def _am_alerts(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v2/alerts") as resp:
        assert resp.status == 200
        return list(await resp.json())


@needs_am
async def test_alertmanager_lists_and_resolves_our_alerts(alertmanager: str) -> None:
    config = parse_config({
        "dashboard_url": "http://127.0.0.1:6066/dashboard",
        "channels": {"alertmanager": {"type": "alertmanager", "base_url": alertmanager,
                                      "timeout_secs": 5, "max_attempts": 3}},
    }, {})
    outcomes: list[OutcomeRecord] = []
    registry = CollectorRegistry()
    async with Dispatcher(config, registry=registry, on_outcome=outcomes.append) as d:
        await d.submit(_event(1))
        await d.submit(_event(2, severity="warning",
                              labels={"alertname": "Concentration", "portfolio": "p2"}))
        await d.drain()
        assert [o.outcome for o in outcomes] == ["delivered", "delivered"]

        async with aiohttp.ClientSession() as session:
            listed = await _am_alerts(session, alertmanager)
            by_portfolio = {a["labels"].get("portfolio"): a for a in listed}
            assert set(by_portfolio) == {"p1", "p2"}
            first = by_portfolio["p1"]
            assert first["labels"] == {"alertname": "VaR95Breach", "portfolio": "p1",
                                       "strategy": "arb-1", "severity": "critical"}
            assert first["annotations"]["summary"] == "VaR 95 above limit on p1"
            assert first["generatorURL"] == "http://127.0.0.1:6066/dashboard/alerts/am-alert-1"
            assert first["status"]["state"] == "active"

            ended = _rfc3339(datetime.now(UTC) - timedelta(seconds=1))
            await d.submit(_event(1, event_id="am-evt-1-resolved", transition="resolved",
                                  status="resolved", endsAt=ended))
            await d.drain()
            assert outcomes[-1].outcome == "delivered"
            remaining = await _am_alerts(session, alertmanager)
            assert [a["labels"]["portfolio"] for a in remaining] == ["p2"]

    assert registry.get_sample_value(
        "mevrisk_notifications_total", {"channel": "alertmanager", "outcome": "delivered"}
    ) == 3.0

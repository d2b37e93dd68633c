"""The dashboard in Debian's Chromium (Playwright, no browser download) against a real worker
on a real broker: token entry, live rating during a flash crash, acknowledge by click
(confirmed through the API), halt a strategy from the page (confirmed through the API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import REPO_ROOT
from tests.integration.conftest import Env, Worker, env, start_worker, wait_until  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_MS = 1_767_225_600_000
ADMIN, VIEWER = "e2e-admin-token-0001", "e2e-viewer-token-001"
TOKENS = {ADMIN: {"role": "admin", "name": "e2e-admin"}, VIEWER: "viewer"}
ARTIFACTS = REPO_ROOT / "artifacts"

if not CHROMIUM.exists():
    pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip package 'playwright' is not installed")


def api(worker: Worker, path: str, token: str = VIEWER) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def wait_js(page: Any, expression: str, timeout_s: float) -> Any:
    """Poll ``expression`` with page.evaluate (the page's CSP forbids Playwright's eval-based
    ``wait_for_function``)."""
    return wait_until(lambda: page.evaluate(expression), timeout_s, expression)


@pytest.fixture
def api_worker(start_worker) -> Iterator[Worker]:  # noqa: F811 - the imported fixture
    """A worker with 1 s bars and the test tokens; its log must stay free of tracebacks."""
    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="2",
                          MEVRISK_API_TOKENS=json.dumps(TOKENS))
    yield worker
    worker.stop()
    log = worker.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_dashboard_live_ack_and_halt(env: Env, api_worker: Worker, tmp_path: Path) -> None:  # noqa: F811
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "150", "--duration", "100", "--start-ms", str(START_MS),
                "--incident", "flash-crash@50s/20s", "--record", str(recording))
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{api_worker.web_port}/"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        page.set_default_timeout(60_000)
        page.goto(url)
        # the token is asked for once, then kept for the browser session
        page.wait_for_selector("#token-form:not([hidden])")
        page.fill("#token-input", ADMIN)
        page.click("#token-form button[type=submit]")
        wait_js(page, "document.getElementById('who').textContent.includes('e2e-admin')", 30)
        page.wait_for_selector("#live.on")
        page.evaluate("""() => {
            window.__ratings = [];
            const el = document.getElementById('rating-value');
            new MutationObserver(() => window.__ratings.push(el.textContent))
                .observe(el, {childList: true, characterData: true, subtree: true});
        }""")
        # the flash crash plays at 5x real time while the page is open
        replay = subprocess.Popen([sys.executable, "-m", "streams.cli", "replay", str(recording), "--pace",
                                   "fast"], cwd=REPO_ROOT, env=env.environ(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            row = page.wait_for_selector('#alerts-table tr[data-state="firing"] button.ack', timeout=90_000)
            wait_js(page, "new Set(window.__ratings.filter(r => r !== '–')).size >= 2", 90)
            ratings = page.evaluate("window.__ratings")
            assert {"LOW", "MEDIUM"} <= set(ratings), ratings
            page.screenshot(path=str(ARTIFACTS / "dashboard-crash.png"), full_page=True)

            alert_id = row.evaluate("b => b.closest('tr').dataset.alertId")
            page.click(f'#alerts-table tr[data-alert-id="{alert_id}"] button.ack')  # a locator: re-resolved

            def acknowledged() -> list[dict[str, Any]]:
                rows = api(api_worker, "/api/v1/alerts?state=acknowledged")["alerts"]
                return [a for a in rows if a["id"] == alert_id]

            acked = wait_until(acknowledged, 20, "the acknowledgement through the API")
            assert acked[0]["acknowledged_by"] == "e2e-admin"
            page.wait_for_selector(f'#alerts-table tr[data-alert-id="{alert_id}"][data-state="acknowledged"]')

            page.click('#strategies-table tr[data-strategy="jit-univ3"] button.danger')  # confirm(): accepted
            wait_until(lambda: api(api_worker, "/api/v1/controls")["states"].get("strategy:jit-univ3")
                       == "HALTED", 20, "the HALT through the API")
            page.wait_for_selector('#strategies-table tr[data-strategy="jit-univ3"] button:not(.danger)')
            page.screenshot(path=str(ARTIFACTS / "dashboard-after-actions.png"), full_page=True)
        finally:
            replay.wait(timeout=60)
            browser.close()
    assert errors == [], errors
    assert os.path.getsize(ARTIFACTS / "dashboard-after-actions.png") > 10_000

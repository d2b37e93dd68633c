"""The dashboard in Debian's Chromium (Playwright, no browser download) against a real worker
on a real broker, fed live by ``mevrisk simulate`` (which follows ``risk.controls``): token
entry, live rating during a flash
crash, acknowledge by click (confirmed through the API), halt a strategy from the page
(confirmed through the API, then by the simulator: the halted strategy stops opening
positions and sending bundles while the others carry on); the firm view and the alert summary
against the API's figures, the original dashboard's fields, and the daily report link of a
portfolio followed to its report page."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.settings import REPO_ROOT
from tests.integration.conftest import (  # noqa: F401 - fixtures
    Env,
    Worker,
    env,
    start_worker,
    wait_until,
    worker_watch,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_MS = 1_767_225_600_000
HALTED_STRATEGY = "jit-univ3"
WATCH_SECS = 15.0
"""Wall seconds of simulator output checked after the HALT took effect (75 s of event time)."""
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
    """A worker with 1 s bars and the test tokens; watched for crashes by ``start_worker``."""
    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="2",
                          MEVRISK_API_TOKENS=json.dumps(TOKENS))
    yield worker


def _halt_followed(topic: str, value: dict[str, Any]) -> bool:
    """The simulator's first interval of the halted strategy that sends no bundle."""
    return topic == "mev.strategy.stats" and value["strategy"] == HALTED_STRATEGY and \
        value["bundles_submitted"] == 0


async def _records_from_now(where: Env, seconds: float) -> list[tuple[str, dict[str, Any]]]:
    """(contract topic, value) of what the simulator publishes to mev.positions and
    mev.strategy.stats during ``seconds`` after it first followed the HALT (read from the current
    end of each partition; the simulator's first bundle-free interval of the halted strategy, within
    30 s, starts the window)."""
    topics = {where.topic(name): name for name in ("mev.positions", "mev.strategy.stats")}
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=where.bootstrap, enable_auto_commit=False)
    await consumer.start()  # subscribed without a group: its metadata now lists the partitions
    try:
        consumer.unsubscribe()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        assert tps, "the input topics have no partitions"
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # pin the start before the clock starts
        out: list[tuple[str, dict[str, Any]]] = []
        followed_by = time.monotonic() + 30
        deadline: float | None = None
        while deadline is None or time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in ((topics[tp.topic], orjson.loads(m.value)) for tp, ms in batch.items() for m in ms):
                if deadline is None and _halt_followed(*record):
                    deadline = time.monotonic() + seconds
                if deadline is not None:
                    out.append(record)
            assert deadline is not None or time.monotonic() < followed_by, "the simulator ignores the HALT"
        return out
    finally:
        await consumer.stop()


def _assert_simulator_obeys_halt(where: Env, worker: Worker) -> None:
    """After the HALT: the halted strategy only unwinds (closes) and sends no bundles; a strategy
    no control halts keeps opening positions and sending bundles."""
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        records = pool.submit(asyncio.run, _records_from_now(where, WATCH_SECS)).result()
    states = api(worker, "/api/v1/controls")["states"]
    halted = {scope for scope, state in states.items() if state == "HALTED"}
    positions = [v for t, v in records if t == "mev.positions"]
    stats = [v for t, v in records if t == "mev.strategy.stats"]
    mine = [p for p in positions if p["strategy"] == HALTED_STRATEGY]
    assert all(p["action"] == "close" for p in mine), [p for p in mine if p["action"] != "close"][:3]
    mine_stats = [s for s in stats if s["strategy"] == HALTED_STRATEGY]
    assert mine_stats, "the halted strategy still reports its (empty) intervals"
    assert all(s["bundles_submitted"] == 0 for s in mine_stats), mine_stats[:3]
    free = {p["strategy"] for p in positions
            if not {"global", f"portfolio:{p['portfolio']}", f"strategy:{p['strategy']}"} & halted}
    assert free, f"no strategy left trading (halted scopes {halted})"
    opening = {p["strategy"] for p in positions if p["strategy"] in free and p["action"] == "open"}
    bidding = {s["strategy"] for s in stats if s["strategy"] in free and s["bundles_submitted"] > 0}
    assert opening and bidding, (free, opening, bidding)


def _usd(x: float) -> str:
    """The dashboard's money format (app.js ``usd``)."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M $"
    return f"{x / 1e3:.1f}k $" if abs(x) >= 1e3 else f"{x:.0f} $"


def _text(page: Any, selector: str) -> str:
    return str(page.text_content(selector) or "")


def _assert_firm_summary_and_glance(page: Any, worker: Worker) -> None:
    """With the inputs stopped, the firm view lists every portfolio the API's firm overview lists,
    with the firm's exposure as the API gives it; the alert summary shows the API's counts; the
    original dashboard's fields are filled in."""
    def firm_matches() -> dict[str, Any] | None:
        firm = api(worker, "/api/v1/risk/overview")
        rows = "[...document.querySelectorAll('#firm-table tbody tr')].map(r => r.dataset.portfolio)"
        shown = page.evaluate(rows)
        exposure_shown = _text(page, "#firm-exposure").startswith(_usd(firm["total_exposure"]))
        return firm if shown == firm["portfolios"] and exposure_shown else None

    firm = wait_until(firm_matches, 30, "the firm view to show the API's firm overview")
    assert firm["scope"] == "firm" and len(firm["portfolios"]) >= 2
    assert _text(page, "#firm-div") != "–" and " / " in _text(page, "#firm-var")
    assert _text(page, "#firm-rating") in ("LOW", "MEDIUM", "HIGH", "CRITICAL")

    def summary_matches() -> dict[str, Any] | None:
        summary = api(worker, "/api/v1/alerts/summary")
        cells = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
            '#summary-table td[data-severity]')].filter(td => td.dataset.severity)
            .map(td => [td.dataset.severity, Number(td.nextElementSibling.textContent)]))""")
        return summary if cells == summary["by_severity"] else None

    summary = wait_until(summary_matches, 30, "the alert summary to show the API's counts by severity")
    assert summary["acknowledged_alerts"] >= 1  # the alert acknowledged from this page
    assert _text(page, "#summary-mtta") != "–" and _text(page, "#summary-response").endswith("min")
    for cell in ("#glance-risk-trend", "#glance-var-trend", "#glance-high-risk", "#glance-unresolved",
                 "#glance-scenario"):
        wait_js(page, f"document.querySelector('{cell}').textContent.trim() !== '–'", 30)
    assert page.evaluate("document.querySelectorAll('#spark-var polyline').length") == 2
    scenario = _text(page, "#glance-scenario")
    assert scenario.split(":")[0] in api(worker, "/api/stress-tests")["scenarios"]


def _follow_report_link(page: Any, worker: Worker) -> None:
    """Click a portfolio's daily report link (a signed link: the browser sends no bearer header)
    and see the report page of that portfolio; then come back to the dashboard."""
    name = api(worker, "/api/v1/risk/overview")["portfolios"][-1]
    link = f'#firm-table tr[data-portfolio="{name}"] a.report-link'
    day = page.get_attribute(link, "data-date")
    assert day == time.strftime("%Y-%m-%d", time.gmtime(START_MS / 1000))  # event time's day, not today's
    with page.expect_navigation(url=lambda u: "/api/v1/reports/daily?" in u and "sig=" in u, timeout=180_000):
        page.click(link)
    page.wait_for_load_state("load")
    body = page.text_content("body") or ""
    assert name in body and day in body, body[:500]
    page.screenshot(path=str(ARTIFACTS / "dashboard-report.png"), full_page=True)
    page.go_back()
    page.wait_for_selector("#firm-table tbody tr")


def test_dashboard_live_ack_and_halt(env: Env, api_worker: Worker, tmp_path: Path) -> None:  # noqa: F811
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
        # the simulator runs live at 5x real time while the page is open, following risk.controls
        sim_log = tmp_path / "simulate.log"
        simulator = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "simulate", "--seed", "5", "--rate", "150", "--duration",
             "1200", "--start-ms", str(START_MS), "--incident", "flash-crash@50s/20s", "--pace", "realtime",
             "--speed", "5"],
            cwd=REPO_ROOT, env=env.environ(), stdout=subprocess.DEVNULL, stderr=sim_log.open("wb"),
            start_new_session=True)
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

            row_of = f'#strategies-table tr[data-strategy="{HALTED_STRATEGY}"]'
            page.click(f"{row_of} button.danger")  # confirm(): accepted
            scope = f"strategy:{HALTED_STRATEGY}"
            wait_until(lambda: api(api_worker, "/api/v1/controls")["states"].get(scope) == "HALTED", 20,
                       "the HALT through the API")
            page.wait_for_selector(f"{row_of} button:not(.danger)")
            page.wait_for_selector("#deliveries-table tbody tr")  # the Notifications panel (none configured)
            page.screenshot(path=str(ARTIFACTS / "dashboard-after-actions.png"), full_page=True)
            assert simulator.poll() is None, sim_log.read_text(errors="replace")[-2000:]
            _assert_simulator_obeys_halt(env, api_worker)
            simulator.terminate()  # the figures below hold still once the inputs stop
            simulator.wait(timeout=30)
            _assert_firm_summary_and_glance(page, api_worker)
            page.screenshot(path=str(ARTIFACTS / "dashboard-firm.png"), full_page=True)
            _follow_report_link(page, api_worker)
        finally:
            if simulator.poll() is None:
                simulator.terminate()
            simulator.wait(timeout=30)
            browser.close()
    assert errors == [], errors
    assert os.path.getsize(ARTIFACTS / "dashboard-after-actions.png") > 10_000

"""Real broker, real worker: ``GET /api/v1/reports/daily`` builds the day's report from the topics
the worker wrote (JSON by the schema, and a PDF), answers 404 for a day without data, and a signed
link opens the HTML page without a bearer header.

The day: 60 s of 2025-12-01 from 00:00:00 with a flash crash, replayed fast from a recording; the
portfolios the report must list are read from the recording itself.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from agents.replay import read_rows
from streams.settings import REPO_ROOT
from tests.integration.conftest import Env, Worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

DAY_MS = 1764547200000  # 2025-12-01T00:00:00Z
DATE = "2025-12-01"
VIEWER = "report-viewer-token-01"
SCHEMA = json.loads((REPO_ROOT / "schemas" / "json" / "risk.report.daily.schema.json").read_text())


def _get(worker: Worker, path: str, token: str | None = VIEWER) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET to the worker."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=150) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _recorded_portfolios(path: Path) -> set[str]:
    return {orjson.loads(raw)["portfolio"]
            for topic, _, raw, _key in read_rows(path) if topic == "mev.positions"}


def _alert_ids(report: dict[str, Any]) -> set[str]:
    """Ids of every alert in the report (portfolio sections and the firm's)."""
    return {a["id"] for p in report["portfolios"] for a in p["alerts"]} | {
        a["id"] for a in report["firm"]["alerts"]}


def test_daily_report_over_http_from_a_live_worker(env: Env, start_worker, tmp_path: Path) -> None:
    recording = tmp_path / "day.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "50", "--duration", "60", "--start-ms", str(DAY_MS),
                "--incident", "flash-crash@30s/15s", "--record", str(recording))
    portfolios = _recorded_portfolios(recording)
    assert len(portfolios) >= 2
    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="3",
                          MEVRISK_API_TOKENS=json.dumps({VIEWER: "viewer"}))
    env.mevrisk("replay", str(recording), "--pace", "fast")

    def full_report() -> dict[str, Any] | None:
        status, ctype, body = _get(worker, f"/api/v1/reports/daily?date={DATE}&format=json")
        if status == 503:  # a report being built (a slow earlier poll): ask again
            return None
        assert status in (200, 404), (status, body[:300])
        if status == 404:
            return None
        assert ctype.startswith("application/json"), ctype
        report = orjson.loads(body)
        seen = {p["portfolio"] for p in report["portfolios"] if p["snapshots"] > 0}
        known = {a["id"] for a in orjson.loads(_get(worker, "/api/v1/alerts?limit=1000")[2])["alerts"]}
        return report if seen == portfolios and known and _alert_ids(report) == known else None

    report = wait_until(full_report, 240, "a report of every recorded portfolio and every alert the worker "
                        "raised (the flash crash)", interval=2.0)
    jsonschema.validate(report, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert report["date"] == DATE and report["source"] == "topics"
    assert all(DAY_MS <= p["first_ts_ms"] <= p["last_ts_ms"] < DAY_MS + 86_400_000
               for p in report["portfolios"])

    name = sorted(portfolios)[0]
    status, ctype, pdf = _get(worker, f"/api/v1/reports/daily?date={DATE}&portfolio={name}&format=pdf")
    assert status == 200 and ctype == "application/pdf", (status, pdf[:300])
    assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000

    status, _, body = _get(worker, "/api/v1/reports/daily?date=2025-11-30&format=json")
    assert status == 404 and b"no snapshot" in body
    assert _get(worker, f"/api/v1/reports/daily?date={DATE}", token=None)[0] == 401

    status, _, body = _get(worker, f"/api/v1/reports/daily/link?date={DATE}&portfolio={name}")
    assert status == 200
    status, ctype, html = _get(worker, orjson.loads(body)["url"], token=None)  # as a browser follows it
    assert status == 200 and ctype.startswith("text/html") and name.encode() in html
    worker.assert_healthy()

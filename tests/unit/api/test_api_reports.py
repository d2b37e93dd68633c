"""``GET /api/v1/reports/daily`` and its signed links, over a recorded day with known incidents
(``tests.unit.reports.test_model._day_records``: portfolios alpha and beta, a VaR 95 breach of
alpha for 10 minutes, one alert acknowledged after 30 s)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jsonschema
import pytest
from aiokafka.errors import KafkaConnectionError

from streams.api.report_links import LinkSigner
from tests.unit.api.conftest import BEARER, REPORT_DATE, FakeHost, make_client, read_report_day
from tests.unit.reports.test_model import SCHEMA, _day_records

DAILY = "/api/v1/reports/daily"
JSON_DAY = {"date": REPORT_DATE, "format": "json"}
VIEWER = BEARER["viewer"]


@pytest.fixture
async def client(host: FakeHost) -> Any:
    c = await make_client(host)
    yield c
    await c.close()


def _expected_breach(portfolio: str) -> tuple[float, int]:
    """(max VaR 95, minutes above the 10,000 USD limit) of ``portfolio``, from the records themselves."""
    snaps = [s for s in _day_records()["snapshots"]
             if s["portfolio"] == portfolio and s["ts_ms"] < 1_764_633_600_000 and "var_95_usd" in s]
    values = [s["var_95_usd"] for s in snaps]
    return max(values), sum(1 for v in values if v > 10_000)


async def test_json_report_follows_the_schema_and_the_records(client) -> None:
    resp = await client.get(DAILY, params=JSON_DAY, headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert body["date"] == REPORT_DATE and body["source"] == "topics"
    by_name = {p["portfolio"]: p for p in body["portfolios"]}
    assert sorted(by_name) == ["alpha", "beta"]
    peak, minutes_over = _expected_breach("alpha")
    alpha = by_name["alpha"]
    assert alpha["figures"]["var_95_usd"]["max"] == peak
    breach = next(lim for lim in alpha["limits"] if lim["limit"] == "var_95_usd")
    assert breach["breach_count"] == 1 and breach["breaches"][0]["duration_s"] == minutes_over * 60
    assert alpha["mttx"]["overall"]["mtta_s"] == 30.0  # fired at +30 min, acknowledged 30 s later
    assert "inline" in resp.headers["Content-Disposition"]


async def test_one_portfolio_only(client) -> None:
    resp = await client.get(DAILY, params={"date": REPORT_DATE, "format": "json", "portfolio": "beta"},
                            headers=BEARER["viewer"])
    body = await resp.json()
    assert resp.status == 200 and [p["portfolio"] for p in body["portfolios"]] == ["beta"]
    assert body["portfolio_filter"] == "beta"


async def test_html_is_self_contained_with_its_own_csp(client) -> None:
    resp = await client.get(DAILY, params={"date": REPORT_DATE, "portfolio": "alpha"}, headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "text/html" and resp.charset == "utf-8"
    html = await resp.text()
    assert "alpha" in html and REPORT_DATE in html
    assert "src=\"http" not in html and "href=\"http" not in html  # no external asset
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


async def test_pdf(client) -> None:
    pytest.importorskip("weasyprint")
    resp = await client.get(DAILY, params={"date": REPORT_DATE, "format": "pdf", "portfolio": "beta"},
                            headers=BEARER["viewer"])
    assert resp.status == 200 and resp.content_type == "application/pdf"
    data = await resp.read()
    assert data.startswith(b"%PDF-") and len(data) > 5_000
    assert 'filename="report-2025-12-01-beta.pdf"' in resp.headers["Content-Disposition"]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({}, 400, "'date'"),
    ({"date": "2025-13-01"}, 400, "'date'"),
    ({"date": "yesterday"}, 400, "'date'"),
    ({"date": REPORT_DATE, "format": "docx"}, 400, "'format'"),
    ({"date": "2025-11-30"}, 404, "no snapshot"),
    ({"date": REPORT_DATE, "portfolio": "gamma"}, 404, "gamma"),
])
async def test_bad_requests(client, params: dict[str, str], status: int, words: str) -> None:
    resp = await client.get(DAILY, params=params, headers=BEARER["viewer"])
    assert resp.status == status
    assert words in (await resp.json())["error"]


async def test_one_report_at_a_time(client) -> None:
    async with client.service.reports.busy:
        resp = await client.get(DAILY, params=JSON_DAY, headers=VIEWER)
        assert resp.status == 503 and "being built" in (await resp.json())["error"]
    resp = await client.get(DAILY, params=JSON_DAY, headers=VIEWER)
    assert resp.status == 200


async def test_rendering_runs_off_the_event_loop(client) -> None:
    """While a report renders, the worker's loop keeps answering (the render is in a thread)."""
    started, release = threading.Event(), threading.Event()
    loop_thread = threading.get_ident()
    seen: list[int] = []

    async def slow_read(date: str) -> Any:
        day = await read_report_day(date)
        real = day.records

        class Gate(dict):  # the model reads the records in the render thread: hold it there
            def get(self, key: str, default: Any = None) -> Any:
                if key == "snapshots" and not started.is_set():
                    seen.append(threading.get_ident())
                    started.set()
                    release.wait(30)
                return super().get(key, default)

        day.records = Gate(real)
        return day

    client.service.reports.read_day = slow_read
    report = asyncio.ensure_future(client.get(DAILY, params={"date": REPORT_DATE, "format": "json"},
                                              headers=BEARER["viewer"]))
    assert await asyncio.to_thread(started.wait, 30)
    who = await client.get("/api/v1/whoami", headers=BEARER["viewer"])
    assert who.status == 200  # answered while the render thread is held
    release.set()
    assert (await report).status == 200
    assert seen and seen[0] != loop_thread


async def test_unreadable_topics_are_503(client) -> None:
    async def broken(date: str) -> Any:
        raise KafkaConnectionError("no broker")

    client.service.reports.read_day = broken
    resp = await client.get(DAILY, params={"date": REPORT_DATE}, headers=BEARER["viewer"])
    assert resp.status == 503 and "could not be read" in (await resp.json())["error"]


# ---- signed links -----------------------------------------------------------------------------
async def _link(client, **params: str) -> str:
    resp = await client.get(f"{DAILY}/link", params=params, headers=BEARER["viewer"])
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["url"])


async def test_a_signed_link_opens_the_report_without_a_token(client) -> None:
    url = await _link(client, date=REPORT_DATE, portfolio="alpha")
    assert url.startswith(DAILY + "?") and "viewer-token-0001" not in url
    resp = await client.get(url)  # no Authorization header, as a browser following a link
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "alpha" in await resp.text()
    assert (await client.get(f"{DAILY}?date={REPORT_DATE}&portfolio=alpha")).status == 401


async def test_a_link_cannot_be_altered_reused_elsewhere_or_kept(client) -> None:
    url = await _link(client, date=REPORT_DATE, portfolio="alpha", format="html")
    query = dict(parse_qsl(urlsplit(url).query))
    for change in ({"portfolio": "beta"}, {"format": "pdf"}, {"actor": "someone-else"},
                   {"expires": str(int(query["expires"]) + 3600)}):
        resp = await client.get(DAILY + "?" + urlencode({**query, **change}))
        assert resp.status == 401, change
    repeated = await client.get(url + "&portfolio=beta")
    assert repeated.status == 401 and "repeats" in (await repeated.json())["error"]
    # the signature admits only the report route
    other = await client.get("/api/v1/risk/overview?" + urlsplit(url).query)
    assert other.status == 401
    # expired: a signer whose clock is past the expiry
    links: LinkSigner = client.service.access.links
    links._clock = lambda: float(int(query["expires"]) + 1)  # type: ignore[attr-defined]
    resp = await client.get(url)
    assert resp.status == 401 and "expired" in (await resp.json())["error"]


async def test_link_route_checks_its_query(client) -> None:
    resp = await client.get(f"{DAILY}/link", params={"date": "2025-02-30"}, headers=BEARER["viewer"])
    assert resp.status == 400
    assert (await client.get(f"{DAILY}/link", params={"date": REPORT_DATE})).status == 401

"""The daily report over HTTP:
``GET /api/v1/reports/daily?date=YYYY-MM-DD[&portfolio=P]&format=html|pdf|json``
(viewer role, or a signed link from ``GET /api/v1/reports/daily/link``), the same report as
``mevrisk report daily`` (``agents.reports``), read from the topics by ``streams.report_reader``.

The read is async (aiokafka); the model and its rendering (matplotlib, WeasyPrint) block, so they
run in a thread, one report at a time per worker: a request while one is being built gets 503
with ``Retry-After`` rather than queueing behind it. 400 for a bad date or format, 404 when the
day (or the portfolio that day) has neither snapshots nor an archived report, 503 when the
broker cannot be read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from agents.reports.day import day_bounds
from agents.reports.day_model import NoReportData, model_for_day
from agents.reports.errors import ReportError
from agents.reports.model import ReportOptions
from agents.reports.render import CONTENT_TYPES, FORMATS, render
from streams.api.auth import Principal, Role
from streams.api.common import ApiError, Route, json_response
from streams.api.report_links import LinkSigner

log = logging.getLogger(__name__)

DAILY = "/api/v1/reports/daily"
ROUTES: tuple[Route, ...] = (
    Route("GET", DAILY, "daily_report", Role.VIEWER, signed_link=True),
    Route("GET", f"{DAILY}/link", "daily_report_link", Role.VIEWER),
)
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")
"""The report page has inline CSS and ``data:`` charts, and no script."""
BUSY_RETRY_SECS = 5
READ_TIMEOUT_SECS = 120.0
"""Wall seconds a day's read from the topics may take (the whole ``risk.audit`` is read)."""

DayReader = Callable[[str], Awaitable[Any]]
"""``date -> streams.report_reader.DayRecords`` (records by kind, archived reports)."""


def topic_reader() -> DayReader:
    """Reads a day from this worker's broker (imported late: ``streams.topics`` builds the Faust app)."""
    from streams.report_reader import read_day
    from streams.settings import get_settings

    settings = get_settings()

    async def read(date: str) -> Any:
        return await read_day(settings.kafka_bootstrap_servers, date, settings.max_future_skew_ms)

    return read


def report_options() -> ReportOptions:
    """The engine's bar (``MEVRISK_BAR_MS``, else ``risk.yaml``), as ``mevrisk report daily`` uses."""
    from agents.risk.config import load_risk_config
    from streams.settings import get_settings

    settings = get_settings()
    bar_ms = settings.bar_ms or int(load_risk_config(settings.config_dir / "risk.yaml").bar_ms)
    return ReportOptions(bar_ms=bar_ms, source="topics")


def _query(request: web.Request) -> tuple[str, str | None, str]:
    """(date, portfolio or None, format) of the query; 400 naming the bad one."""
    q = request.query
    date = q.get("date", "")
    try:
        day_bounds(date)
    except ReportError:
        raise ApiError(400, f"query parameter 'date' must be a UTC day YYYY-MM-DD, got {date!r}") from None
    fmt = (q.get("format") or "html").lower()
    if fmt not in FORMATS:
        raise ApiError(400, f"query parameter 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    portfolio = q.get("portfolio") or None
    if portfolio is not None and len(portfolio) > 200:
        raise ApiError(400, "query parameter 'portfolio' is longer than 200 characters")
    return date, portfolio, fmt


def _build(day: Any, date: str, portfolio: str | None, fmt: str, options: ReportOptions) -> bytes:
    """The report bytes (blocking: runs in a thread). ``NoReportData`` when the day has no data."""
    model = model_for_day(day.records, day.archived, date, portfolio, options)
    return render(model, (fmt,))[fmt]


class ReportViews:
    def __init__(self, links: LinkSigner, read_day: DayReader | None = None,
                 options: Callable[[], ReportOptions] = report_options) -> None:
        self.links = links
        self.read_day = read_day
        self._options = options
        self._options_value: ReportOptions | None = None
        self.busy = asyncio.Lock()
        """Held while a report is built: one at a time per worker."""

    async def daily_report(self, request: web.Request, who: Principal) -> web.StreamResponse:
        date, portfolio, fmt = _query(request)
        if self.busy.locked():
            raise ApiError(503, "a report is being built on this worker; retry shortly",
                           retry_after_secs=BUSY_RETRY_SECS)
        async with self.busy:
            if self.read_day is None:
                self.read_day = topic_reader()
            if self._options_value is None:
                self._options_value = self._options()
            try:
                day = await asyncio.wait_for(self.read_day(date), READ_TIMEOUT_SECS)
            except (OSError, TimeoutError, KafkaError) as e:
                log.warning("report of %s: the topics could not be read: %r", date, e)
                raise ApiError(503, f"the topics could not be read: {type(e).__name__}") from None
            try:
                body = await asyncio.to_thread(_build, day, date, portfolio, fmt, self._options_value)
            except NoReportData as e:
                raise ApiError(404, str(e)) from None
            except ReportError as e:  # e.g. PDF without WeasyPrint/Pango on this machine
                raise ApiError(503, str(e)) from None
        return _report_response(body, fmt, f"report-{date}" + (f"-{portfolio}" if portfolio else ""))

    async def daily_report_link(self, request: web.Request, who: Principal) -> web.StreamResponse:
        """A signed URL of the report (``url``, relative to this worker) a browser can follow."""
        date, portfolio, fmt = _query(request)
        params = {"date": date, "format": fmt, **({"portfolio": portfolio} if portfolio else {})}
        url = self.links.sign(DAILY, params, who.name)
        return json_response({"url": url, "expires_in_secs": self.links.ttl_secs, "date": date,
                              "portfolio": portfolio, "format": fmt})


def _report_response(body: bytes, fmt: str, stem: str) -> web.Response:
    ctype, _, charset = CONTENT_TYPES[fmt].partition("; charset=")
    safe_stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Disposition": f'inline; filename="{safe_stem}.{fmt}"',
               "Referrer-Policy": "no-referrer"}
    if fmt == "html":
        headers["Content-Security-Policy"] = REPORT_CSP
    return web.Response(body=body, content_type=ctype, charset=charset or None, headers=headers)

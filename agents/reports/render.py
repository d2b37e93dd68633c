"""Renders the report model as HTML, PDF (WeasyPrint) and JSON; ``build_daily_report`` is the
one call the CLI and the REST route make.

PDF needs Debian's Pango (``make system-deps`` installs it); WeasyPrint is imported only when a
PDF is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from agents.reports.errors import ReportError
from agents.reports.html import render_html
from agents.reports.model import ReportOptions, build_model

FORMATS = ("html", "pdf", "json")
CONTENT_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "json": "application/json"}


def render_json(model: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, indented): the same model gives the same bytes."""
    return orjson.dumps(model, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def render_pdf(html: str) -> bytes:
    """The HTML page printed to PDF by WeasyPrint (no network: every asset is inline)."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as e:  # OSError: Pango missing
        raise ReportError(f"PDF output needs WeasyPrint and Pango (make system-deps): {e}") from None
    return bytes(HTML(string=html, base_url=None).write_pdf())


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"html,pdf"`` or a list into known formats, in the given order, without repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in (i.strip().lower() for i in items):
        if item not in FORMATS:
            raise ReportError(f"unknown report format {item!r} (known: {', '.join(FORMATS)})")
        if item not in out:
            out.append(item)
    if not out:
        raise ReportError("no report format asked for")
    return tuple(out)


def render(model: Mapping[str, Any], formats: Sequence[str]) -> dict[str, bytes]:
    """The model in each of ``formats``."""
    out: dict[str, bytes] = {}
    html: str | None = None
    for fmt in parse_formats(formats):
        if fmt == "json":
            out[fmt] = render_json(model)
            continue
        html = html if html is not None else render_html(model)
        out[fmt] = html.encode() if fmt == "html" else render_pdf(html)
    return out


def build_daily_report(records: Mapping[str, Sequence[Mapping[str, Any]]], date: str,
                       portfolio: str | None = None, formats: Sequence[str] | str = FORMATS,
                       options: ReportOptions | None = None) -> dict[str, bytes]:
    """The daily report of ``date`` (UTC ``YYYY-MM-DD``) from the day's records (see
    ``agents.reports.model``), for every portfolio or one: ``{format: bytes}``. Raises
    ``ReportError`` on a bad date, format or unknown portfolio."""
    return render(build_model(records, date, portfolio, options), parse_formats(formats))

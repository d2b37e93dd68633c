"""The report model of a day from what the topics hold: the day's records when its snapshots are
still on ``risk.snapshots``, else the day's archive from ``risk.reports`` (older than the
snapshots' retention). One rule for ``mevrisk report daily`` and ``GET /api/v1/reports/daily``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.reports.archive import merge_archived
from agents.reports.errors import ReportError
from agents.reports.model import ReportOptions, build_model


class NoReportData(ReportError):
    """Nothing on the topics for this day (or this portfolio on this day)."""


def model_for_day(records: Mapping[str, Sequence[Mapping[str, Any]]], archived: Sequence[Mapping[str, Any]],
                  date: str, portfolio: str | None, options: ReportOptions) -> dict[str, Any]:
    """The model of ``date`` (UTC) for every portfolio or ``portfolio``; ``NoReportData`` when
    the day (or the portfolio that day) has neither snapshots nor an archived report."""
    if not records.get("snapshots"):
        model = merge_archived(archived, portfolio)
        if model is None:
            what = f"portfolio {portfolio!r} on {date}" if portfolio else date
            raise NoReportData(f"no snapshot and no archived report of {what} on the topics")
        return model
    try:
        return build_model(records, date, portfolio, options)
    except ReportError as e:  # the date is valid here: only an unknown portfolio is left
        raise NoReportData(str(e)) from None

"""UTC day bounds and the event-time filter of a day's records.

>>> day_bounds("2025-12-01")
(1764547200000, 1764633600000)
>>> day_of(1764547200000 + 5)
'2025-12-01'
"""

from __future__ import annotations

import datetime as dt

from agents.reports.errors import ReportError

DAY_MS = 86_400_000


def day_bounds(date: str) -> tuple[int, int]:
    """``[start_ms, end_ms)`` of the UTC day ``YYYY-MM-DD`` in ms since the epoch."""
    try:
        day = dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ReportError(f"date must be YYYY-MM-DD, got {date!r}") from None
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    start_ms = int(start.timestamp() * 1000)
    return start_ms, start_ms + DAY_MS


def day_of(ts_ms: int) -> str:
    """The UTC date (``YYYY-MM-DD``) of an event time in ms."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).date().isoformat()

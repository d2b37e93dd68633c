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


def event_ms(record: object, key: str = "ts_ms") -> int | None:
    """A record's integer event time under ``key``, or None (records read from topics are untrusted).

    >>> event_ms({"ts_ms": 5}), event_ms({"ts_ms": "5"}), event_ms({"ts_ms": True}), event_ms("x")
    (5, None, None, None)
    """
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None

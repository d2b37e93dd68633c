"""Durations and Alertmanager-shaped timestamps, all in integer milliseconds.

>>> parse_duration("1h30m")
5400000
>>> parse_duration("250ms")
250
>>> rfc3339(0)
'1970-01-01T00:00:00Z'
>>> rfc3339(1500)
'1970-01-01T00:00:01.500Z'
"""

from __future__ import annotations

import datetime as dt
import re

ZERO_TIME = "0001-01-01T00:00:00Z"
"""``endsAt`` of a firing alert (Alertmanager's zero time)."""

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: object) -> int:
    """Parse a Prometheus-style duration (``30s``, ``5m``, ``1h30m``, ``500ms``) to ms.

    ``0`` (int or string) is accepted; any other bare number is rejected because its
    unit would be a guess. Raises ``ValueError`` with the reason.
    """
    if isinstance(text, bool):
        raise ValueError(f"bad duration {text!r}: expected a string such as '30s' or '5m'")
    if text == 0 or text == "0":
        return 0
    if not isinstance(text, str):
        raise ValueError(f"bad duration {text!r}: give a unit, e.g. '30s', '5m', '1h'")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"bad duration {text!r}: expected e.g. '30s', '5m', '1h30m', '500ms'")
    return round(total)


def rfc3339(ts_ms: int | None) -> str:
    """RFC 3339 UTC string for an event time in ms (milliseconds kept when non-zero)."""
    if ts_ms is None:
        return ""
    try:
        t = dt.datetime.fromtimestamp(ts_ms / 1000.0, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):  # beyond year 9999: no RFC 3339 form exists
        return ""
    if ts_ms % 1000:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")

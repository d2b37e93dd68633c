"""Alert summary over a period, in the seed's shape, computed from alert events.

>>> evs = [{"id": "a", "rule": "R", "transition": "firing", "severity": "high",
...         "ts_ms": 0, "starts_at_ms": 0},
...        {"id": "a", "rule": "R", "transition": "acknowledged", "severity": "high",
...         "ts_ms": 120_000}]
>>> s = summarize(evs)
>>> (s["total_alerts"], s["active_alerts"], s["acknowledged_alerts"], s["average_response_time"])
(1, 1, 1, 2.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.alerts.rules import SEVERITY_RANK


def summarize(events: Iterable[Mapping[str, Any]], start_ms: int | None = None,
              end_ms: int | None = None) -> dict[str, Any]:
    """``total_alerts``, ``by_severity`` (highest reached), ``by_type`` (rule),
    ``active_alerts``, ``acknowledged_alerts``, ``average_response_time`` (minutes from
    firing to acknowledgement, None when nothing was acknowledged) for alerts that
    started firing in ``[start_ms, end_ms)``."""
    alerts: dict[str, dict[str, Any]] = {}
    for e in events:
        aid, tr, ts = e.get("id"), e.get("transition"), int(e["ts_ms"])
        if not aid:
            continue
        if tr == "firing":
            if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
                continue
            alerts[aid] = {"rule": e.get("rule"), "severity": e.get("severity"), "start": ts,
                           "ack": None, "resolved": False}
            continue
        a = alerts.get(aid)
        if a is None:
            continue
        sev = e.get("severity")
        if sev in SEVERITY_RANK and SEVERITY_RANK[sev] > SEVERITY_RANK.get(a["severity"], -1):
            a["severity"] = sev
        if tr == "acknowledged" and a["ack"] is None:
            a["ack"] = ts
        elif tr == "resolved":
            a["resolved"] = True
    by_severity: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for a in alerts.values():
        by_severity[a["severity"]] = by_severity.get(a["severity"], 0) + 1
        by_type[a["rule"]] = by_type.get(a["rule"], 0) + 1
    waits = [(a["ack"] - a["start"]) / 60_000 for a in alerts.values() if a["ack"] is not None]
    return {"total_alerts": len(alerts), "by_severity": by_severity, "by_type": by_type,
            "active_alerts": sum(not a["resolved"] for a in alerts.values()),
            "acknowledged_alerts": len(waits),
            "average_response_time": round(sum(waits) / len(waits), 3) if waits else None}

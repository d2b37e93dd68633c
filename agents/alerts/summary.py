"""Alert summary over a period, in the seed's shape, computed from alert events.

The seed's fields: ``total_alerts``, ``by_severity``, ``by_type``, ``active_alerts``,
``acknowledged_alerts`` and ``average_response_time`` (minutes from firing to acknowledgement).
Ours beside them: ``by_state`` (firing, acknowledged, silenced, resolved: each alert counted once,
in its latest state), ``resolved_alerts``, MTTA and MTTR in seconds (mean time from firing to
acknowledgement, to resolution; None when no alert got there), overall and per severity.

>>> evs = [{"id": "a", "rule": "R", "transition": "firing", "severity": "high",
...         "ts_ms": 0, "starts_at_ms": 0},
...        {"id": "a", "rule": "R", "transition": "acknowledged", "severity": "high",
...         "ts_ms": 120_000}]
>>> s = summarize(evs)
>>> (s["total_alerts"], s["active_alerts"], s["acknowledged_alerts"], s["average_response_time"])
(1, 1, 1, 2.0)
>>> s["by_state"], s["mtta_seconds"], s["mttr_seconds"]
({'firing': 0, 'acknowledged': 1, 'silenced': 0, 'resolved': 0}, 120.0, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.alerts.rules import SEVERITY_RANK

STATES = ("firing", "acknowledged", "silenced", "resolved")


def summarize(events: Iterable[Mapping[str, Any]], start_ms: int | None = None,
              end_ms: int | None = None) -> dict[str, Any]:
    """The summary of the alerts that started firing in ``[start_ms, end_ms)`` (event time, ms),
    from their events in order; ``by_severity`` counts the highest severity reached."""
    alerts: dict[str, dict[str, Any]] = {}
    for e in events:
        aid, tr, ts = e.get("id"), e.get("transition"), int(e["ts_ms"])
        if not aid:
            continue
        if tr == "firing":
            if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
                continue
            alerts[aid] = {"rule": e.get("rule"), "severity": e.get("severity"), "start": ts,
                           "ack": None, "resolved": None,
                           "silenced": bool(e.get("silenced") or e.get("inhibited"))}
            continue
        a = alerts.get(aid)
        if a is None:
            continue
        sev = e.get("severity")
        if sev in SEVERITY_RANK and SEVERITY_RANK[sev] > SEVERITY_RANK.get(a["severity"], -1):
            a["severity"] = sev
        a["silenced"] = bool(e.get("silenced") or e.get("inhibited"))
        if tr == "acknowledged" and a["ack"] is None:
            a["ack"] = ts
        elif tr == "resolved" and a["resolved"] is None:
            a["resolved"] = ts
    return _figures(alerts)


def summarize_states(rows: Iterable[Mapping[str, Any]], start_ms: int | None = None,
                     end_ms: int | None = None) -> dict[str, Any]:
    """The same summary from the latest state of each alert (an alert event or an engine view:
    ``starts_at_ms``, ``acknowledged_at_ms``, ``resolved`` with ``ends_at_ms``), as the API holds
    them; an alert's latest severity is its highest (escalation only raises it)."""
    events: list[dict[str, Any]] = []
    for r in rows:
        start = r.get("starts_at_ms", r.get("ts_ms"))
        if not r.get("id") or start is None:
            continue
        base = {"id": r["id"], "rule": r.get("rule"), "severity": r.get("severity")}
        events.append({**base, "transition": "firing", "ts_ms": int(start)})
        flags = {"silenced": r.get("silenced"), "inhibited": r.get("inhibited")}
        if r.get("acknowledged") and r.get("acknowledged_at_ms") is not None:
            acked = int(r["acknowledged_at_ms"])
            events.append({**base, **flags, "transition": "acknowledged", "ts_ms": acked})
        if r.get("resolved") and r.get("ends_at_ms") is not None:
            events.append({**base, **flags, "transition": "resolved", "ts_ms": int(r["ends_at_ms"])})
        else:
            events.append({**base, **flags, "transition": "state", "ts_ms": int(r.get("ts_ms", start))})
    events.sort(key=lambda e: (e["ts_ms"], e["transition"] != "firing"))
    return summarize(events, start_ms, end_ms)


def _state(a: Mapping[str, Any]) -> str:
    if a["resolved"] is not None:
        return "resolved"
    if a["ack"] is not None:
        return "acknowledged"
    return "silenced" if a["silenced"] else "firing"


def _mean_secs(spans: list[int]) -> float | None:
    return round(sum(spans) / len(spans) / 1000, 3) if spans else None


def _figures(alerts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    by_severity: dict[str, int] = {}
    by_type: dict[str, int] = {}
    by_state = dict.fromkeys(STATES, 0)
    acks: dict[str, list[int]] = {}
    fixes: dict[str, list[int]] = {}
    for a in alerts.values():
        by_severity[a["severity"]] = by_severity.get(a["severity"], 0) + 1
        by_type[a["rule"]] = by_type.get(a["rule"], 0) + 1
        by_state[_state(a)] += 1
        if a["ack"] is not None:
            acks.setdefault(a["severity"], []).append(a["ack"] - a["start"])
        if a["resolved"] is not None:
            fixes.setdefault(a["severity"], []).append(a["resolved"] - a["start"])
    waits = [w for ws in acks.values() for w in ws]
    repairs = [r for rs in fixes.values() for r in rs]
    return {"total_alerts": len(alerts), "by_severity": by_severity, "by_type": by_type,
            "active_alerts": sum(a["resolved"] is None for a in alerts.values()),
            "acknowledged_alerts": len(waits),
            "average_response_time": round(sum(waits) / len(waits) / 60_000, 3) if waits else None,
            "by_state": by_state, "resolved_alerts": len(repairs),
            "mtta_seconds": _mean_secs(waits), "mttr_seconds": _mean_secs(repairs),
            "mtta_seconds_by_severity": {s: _mean_secs(w) for s, w in sorted(acks.items())},
            "mttr_seconds_by_severity": {s: _mean_secs(r) for s, r in sorted(fixes.items())}}

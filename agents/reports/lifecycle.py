"""Alert lifecycles of a day and their MTTA / MTTR, and the day's controls.

An alert (one ``id``) belongs to the day it started firing in. Its lifecycle: fired (first
``firing`` event), acknowledged (first ``acknowledged``: when, by whom), resolved (first
``resolved``: when, by whom; ``None`` = resolved by its condition clearing), escalations. Its
severity is the highest it reached. MTTA = mean of acknowledged - fired over the acknowledged
alerts; MTTR = mean of resolved - fired over the resolved ones; both in seconds of event time.

>>> evs = [{"id": "a", "rule": "R", "severity": "high", "transition": "firing", "ts_ms": 0},
...        {"id": "a", "transition": "acknowledged", "acknowledged_by": "ops", "ts_ms": 60_000},
...        {"id": "a", "transition": "resolved", "resolved_by": None, "ts_ms": 300_000}]
>>> [life] = lifecycles(evs, 0, 86_400_000)
>>> (life["tta_s"], life["ttr_s"], life["acknowledged_by"], life["resolved_by"])
(60.0, 300.0, 'ops', None)
>>> mttx([life])["overall"]["mtta_s"]
60.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agents.alerts.rules import SEVERITY_RANK
from agents.reports.day import event_ms


def lifecycles(events: Iterable[Mapping[str, Any]], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """One lifecycle per alert that started firing in ``[start_ms, end_ms)``, in firing order;
    events after ``end_ms`` are not seen (the alert is open at the end of the day)."""
    alerts: dict[str, dict[str, Any]] = {}
    timed = [(ts, e) for e in events if (ts := event_ms(e)) is not None]
    for ts, e in sorted(timed, key=lambda pair: pair[0]):
        aid, transition = e.get("id"), e.get("transition")
        if not isinstance(aid, str) or ts >= end_ms:
            continue
        if transition == "firing" and aid not in alerts:
            if ts < start_ms:
                continue
            alerts[aid] = {
                "id": aid, "rule": e.get("rule"), "severity": e.get("severity"),
                "scope": e.get("scope"), "entity_id": e.get("entity_id"), "message": e.get("message"),
                "fired_ts_ms": ts, "acknowledged_ts_ms": None, "acknowledged_by": None,
                "resolved_ts_ms": None, "resolved_by": None, "escalations": 0,
                "action": e.get("action"), "tta_s": None, "ttr_s": None,
            }
            continue
        a = alerts.get(aid)
        if a is None:
            continue
        severity = e.get("severity")
        if severity in SEVERITY_RANK and SEVERITY_RANK[severity] > SEVERITY_RANK.get(a["severity"], -1):
            a["severity"] = severity
        if transition == "escalated":
            a["escalations"] += 1
        elif transition == "acknowledged" and a["acknowledged_ts_ms"] is None:
            a["acknowledged_ts_ms"], a["acknowledged_by"] = ts, e.get("acknowledged_by")
            a["tta_s"] = (ts - a["fired_ts_ms"]) / 1000
        elif transition == "resolved" and a["resolved_ts_ms"] is None:
            a["resolved_ts_ms"], a["resolved_by"] = ts, e.get("resolved_by")
            a["ttr_s"] = (ts - a["fired_ts_ms"]) / 1000
    return list(alerts.values())


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tta = [a["tta_s"] for a in alerts if a["tta_s"] is not None]
    ttr = [a["ttr_s"] for a in alerts if a["ttr_s"] is not None]
    return {"alerts": len(alerts), "acknowledged": len(tta), "resolved": len(ttr),
            "mtta_s": _mean(tta), "mttr_s": _mean(ttr)}


def mttx(alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """MTTA and MTTR overall, per severity (highest reached) and per rule."""
    by_severity: dict[str, list[Mapping[str, Any]]] = {}
    by_rule: dict[str, list[Mapping[str, Any]]] = {}
    for a in alerts:
        by_severity.setdefault(str(a["severity"]), []).append(a)
        by_rule.setdefault(str(a["rule"]), []).append(a)
    rank = lambda s: -SEVERITY_RANK.get(s, -1)  # noqa: E731 - highest severity first
    return {"overall": _summary(alerts),
            "by_severity": {s: _summary(by_severity[s]) for s in sorted(by_severity, key=rank)},
            "by_rule": {r: _summary(by_rule[r]) for r in sorted(by_rule)}}


def controls_of(controls: Iterable[Mapping[str, Any]], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The day's controls (HALT / REDUCE / RESUME) with actor and reason, in event-time order."""
    out = [{"ts_ms": ts, "scope": c.get("scope"), "command": c.get("command"),
            "state": c.get("state"), "actor": c.get("actor"), "reason": c.get("reason"),
            "alert_id": c.get("alert_id"), "control_id": c.get("control_id")}
           for c in controls if (ts := event_ms(c)) is not None and start_ms <= ts < end_ms]
    return sorted(out, key=lambda c: c["ts_ms"])


def stale_minutes(alerts: Sequence[Mapping[str, Any]], rules: Iterable[str], end_ms: int) -> dict[str, float]:
    """Minutes each feed was stale: from firing to resolution (or the end of the day) of its
    source-scope alerts of ``rules``; overlapping alerts of one feed count once."""
    names = set(rules)
    spans: dict[str, list[tuple[int, int]]] = {}
    for a in alerts:
        if a["scope"] == "source" and a["rule"] in names:
            stop = a["resolved_ts_ms"] if a["resolved_ts_ms"] is not None else end_ms
            spans.setdefault(str(a["entity_id"]), []).append((a["fired_ts_ms"], stop))
    out = {}
    for feed, intervals in sorted(spans.items()):
        total, reach = 0, None
        for lo, hi in sorted(intervals):
            lo = lo if reach is None else max(lo, reach)
            if hi > lo:
                total += hi - lo
            reach = hi if reach is None else max(reach, hi)
        out[feed] = total / 60_000
    return out

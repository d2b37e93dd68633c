"""Value types shared by the router, the payload builders and the dispatcher.

An alert event is the dict published on ``risk.alerts``; :func:`check_event` is
the one place that says what delivery needs from it. A :class:`Batch` is what one
notification carries: one event, a group of related events, or a digest.

>>> ev = {"event_id": "e1", "id": "a1", "fingerprint": "f1", "severity": "high",
...       "status": "firing", "transition": "firing", "ts_ms": 5, "labels": {}}
>>> b = Batch.of("hook", [ev], kind="single", flush_ms=5)
>>> b.batch_id, b.status, b.max_severity
('e1', 'firing', 'high')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agents.notify.errors import InvalidAlertEvent

AlertEvent = Mapping[str, Any]
BatchKind = Literal["single", "group", "digest"]
SEVERITY_RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}
_REQUIRED = ("event_id", "id", "fingerprint", "severity", "status", "transition", "ts_ms")
_NULL_TIMES = ("", "0001-01-01T00:00:00Z")


def check_event(event: Any) -> AlertEvent:
    """Return ``event`` if delivery can handle it, else raise :class:`InvalidAlertEvent`."""
    if not isinstance(event, Mapping):
        raise InvalidAlertEvent(f"alert event must be a mapping, got {type(event).__name__}")
    missing = [k for k in _REQUIRED if event.get(k) in (None, "")]
    if missing:
        raise InvalidAlertEvent(f"alert event lacks {', '.join(missing)}")
    if event["severity"] not in SEVERITY_RANK:
        raise InvalidAlertEvent(f"unknown severity {event['severity']!r}")
    if not isinstance(event["ts_ms"], int) or isinstance(event["ts_ms"], bool):
        raise InvalidAlertEvent("ts_ms must be an integer (event time, ms since epoch)")
    for key in ("labels", "annotations", "values"):
        if event.get(key) is not None and not isinstance(event[key], Mapping):
            raise InvalidAlertEvent(f"{key} must be a mapping")
    channels = event.get("channels")
    if channels is not None and (
        isinstance(channels, str) or not all(isinstance(c, str) for c in channels)
    ):
        raise InvalidAlertEvent("channels must be a list of channel names")
    return event


def labels_of(event: AlertEvent) -> dict[str, str]:
    """The event's labels as strings, with ``alertname`` and ``severity`` filled in."""
    labels = {str(k): str(v) for k, v in (event.get("labels") or {}).items()}
    labels.setdefault("alertname", str(event.get("rule_name") or event.get("rule") or "alert"))
    labels.setdefault("severity", str(event.get("severity", "")))
    return labels


def rule_name(event: AlertEvent) -> str:
    """A human name for the event's rule (one line)."""
    name = str(event.get("rule_name") or event.get("rule") or labels_of(event)["alertname"])
    return " ".join(name.split())


def summary_of(event: AlertEvent) -> str:
    """One line describing the alert: annotation summary, else message, else the rule.

    Whitespace runs (newlines included) collapse to one space, so the text is safe
    in an email subject or an SMS.

    >>> summary_of({"annotations": {"summary": "VaR  up\\r\\nBcc: x"}})
    'VaR up Bcc: x'
    """
    ann = event.get("annotations") or {}
    text = str(ann.get("summary") or event.get("message") or rule_name(event))
    return " ".join(text.split())


def ends_at(event: AlertEvent) -> str | None:
    """``endsAt`` if the event carries a real one, else None (still firing)."""
    value = event.get("endsAt")
    return None if value in _NULL_TIMES or value is None else str(value)


def should_notify(event: AlertEvent) -> bool:
    """False for silenced or inhibited events (``notify: false``)."""
    return bool(event.get("notify", True)) and event.get("transition") != "silenced"


@dataclass(frozen=True)
class Batch:
    """What one notification on one channel carries.

    ``events`` are every event the notification covers (the ledger marks them
    all); :attr:`alerts` keeps the latest event per fingerprint for display.
    """

    channel: str
    kind: BatchKind
    events: tuple[AlertEvent, ...]
    flush_ms: int
    group_key: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        channel: str,
        events: Iterable[AlertEvent],
        *,
        kind: BatchKind,
        flush_ms: int,
        group_key: tuple[tuple[str, str], ...] = (),
    ) -> Batch:
        return cls(channel, kind, tuple(events), flush_ms, group_key)

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(str(e["event_id"]) for e in self.events)

    @property
    def batch_id(self) -> str:
        """Idempotency key: the event id for one event, a stable digest for several."""
        ids = self.event_ids
        if len(ids) == 1:
            return ids[0]
        digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]
        return f"{self.kind}-{digest}"

    @property
    def alerts(self) -> tuple[AlertEvent, ...]:
        """Latest event per fingerprint, in first-seen order."""
        latest: dict[str, AlertEvent] = {}
        for event in self.events:
            latest[str(event["fingerprint"])] = event
        return tuple(latest.values())

    @property
    def status(self) -> str:
        """``firing`` if any alert still fires, else ``resolved``."""
        return "firing" if any(a.get("status") != "resolved" for a in self.alerts) else "resolved"

    @property
    def max_severity(self) -> str:
        return max((str(a["severity"]) for a in self.alerts), key=SEVERITY_RANK.__getitem__)

    def without(self, event_ids: Iterable[str]) -> Batch:
        """This batch less the given events (already delivered elsewhere)."""
        drop = set(event_ids)
        kept = tuple(e for e in self.events if str(e["event_id"]) not in drop)
        return Batch(self.channel, self.kind, kept, self.flush_ms, self.group_key)

"""Alert state (one per fingerprint) and the immutable alert event.

States: ``pending`` (the expr is true, ``for`` not yet elapsed) and ``firing``; an
inactive or resolved alert has no state at all. Transitions, each an
:class:`AlertEvent`: ``firing``, ``repeat`` (re-notification after ``cooldown``),
``escalated``, ``acknowledged``, ``silenced`` (a silence or an inhibition started to
cover a firing alert) and ``resolved``.

Both classes are plain data: :meth:`AlertState.to_dict` / :meth:`AlertState.from_dict`
round-trip through JSON, so the agent can keep one state per fingerprint in a
changelogged table.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from agents.alerts.timeutil import ZERO_TIME, rfc3339

TRANSITIONS = ("firing", "repeat", "escalated", "acknowledged", "silenced", "resolved")
NOTIFYING = frozenset({"firing", "repeat", "escalated", "resolved"})


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """sha256 hex of the rule name and the sorted labels.

    >>> fingerprint("R", {"portfolio": "p1"}) == fingerprint("R", {"portfolio": "p1"})
    True
    >>> fingerprint("R", {"portfolio": "p1"}) != fingerprint("R", {"portfolio": "p2"})
    True
    """
    text = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()


def alert_id(fp: str, starts_at_ms: int) -> str:
    """The alert's id: stable from firing to resolution (the API's ``alert_id``)."""
    return hashlib.sha256(f"{fp}|{starts_at_ms}".encode()).hexdigest()[:16]


def event_id(fp: str, transition: str, ts_ms: int) -> str:
    return hashlib.sha256(f"{fp}|{transition}|{ts_ms}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class AlertState:
    """Mutable bookkeeping of one (rule, entity) alert; plain data, JSON-serialisable."""

    fingerprint: str
    rule: str
    rule_hash: str
    scope: str
    entity_id: str
    labels: dict[str, str]
    status: str  # "pending" | "firing"
    active_since_ms: int
    severity: str
    cursor_ms: int
    starts_at_ms: int | None = None
    last_true_ms: int | None = None
    false_since_ms: int | None = None
    escalation_level: int = 0
    escalated_from: str | None = None
    """The severity before the latest escalation (the event publishes it as ``escalated_from_severity``)."""
    escalated_at_ms: int | None = None
    """Event time of the latest escalation."""
    channels: list[str] = field(default_factory=list)
    last_notified_ms: int | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at_ms: int | None = None
    ack_comment: str | None = None
    suppressed: bool = False
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str | None:
        return alert_id(self.fingerprint, self.starts_at_ms) if self.starts_at_ms is not None \
            else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert transition, as published on ``risk.alerts`` (see :meth:`to_dict`)."""

    event_id: str
    id: str
    fingerprint: str
    rule: str
    scope: str
    entity_id: str
    transition: str
    status: str
    severity: str
    escalation_level: int
    escalated_from: str | None
    """The severity before the latest escalation (``escalated_from_severity`` in :meth:`to_dict`)."""
    escalated_at_ms: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_ms: int
    ends_at_ms: int | None
    ts_ms: int
    values: dict[str, Any]
    channels: tuple[str, ...]
    notify: bool
    silenced: bool
    inhibited: bool
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at_ms: int | None
    ack_comment: str | None
    resolved_by: str | None
    action: dict[str, Any] | None

    @property
    def message(self) -> str:
        return self.annotations.get("summary", self.rule)

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def to_dict(self) -> dict[str, Any]:
        """Alertmanager-shaped dict plus the seed's alert field names."""
        return {
            "event_id": self.event_id, "id": self.id, "fingerprint": self.fingerprint,
            "rule": self.rule, "rule_name": self.rule, "scope": self.scope,
            "entity_id": self.entity_id, "transition": self.transition,
            "status": self.status, "severity": self.severity,
            "escalation_level": self.escalation_level,
            # the seed's escalated_from: the id of the alert that escalated (ours keeps its id)
            "escalated_from": self.id if self.escalation_level > 0 else None,
            "escalated_from_severity": self.escalated_from,
            "escalated_at": rfc3339(self.escalated_at_ms) if self.escalated_at_ms is not None else None,
            "escalated_at_ms": self.escalated_at_ms,
            "labels": dict(self.labels), "annotations": dict(self.annotations),
            "message": self.message,
            "startsAt": rfc3339(self.starts_at_ms), "starts_at_ms": self.starts_at_ms,
            "ends_at_ms": self.ends_at_ms, "acknowledged_at_ms": self.acknowledged_at_ms,
            "endsAt": rfc3339(self.ends_at_ms) if self.ends_at_ms is not None else ZERO_TIME,
            "timestamp": rfc3339(self.ts_ms), "ts_ms": self.ts_ms,
            "values": dict(self.values), "data": dict(self.values),
            "channels": list(self.channels), "notify": self.notify,
            "silenced": self.silenced, "inhibited": self.inhibited,
            "acknowledged": self.acknowledged, "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": rfc3339(self.acknowledged_at_ms)
            if self.acknowledged_at_ms is not None else None,
            "ack_comment": self.ack_comment,
            "resolved": self.resolved,
            "resolved_at": rfc3339(self.ends_at_ms) if self.resolved else None,
            "resolved_by": self.resolved_by,
            "action": dict(self.action) if self.action else None,
        }

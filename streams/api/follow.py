"""Every worker applies every worker's silences, read from ``risk.audit``.

A silence is added (or expired) through the API of one worker, which applies it and
audits it (``kind: silence``). Alerts are evaluated by the worker that owns their
partition, so each worker follows the silence records of ``risk.audit`` (through the
hub's replicated reader) and applies those it does not know yet to its own alert
engine, without auditing them again: the trail keeps one record per operator action,
with the real actor. Crash recovery re-applies the same records
(``agents.pipeline.operator_actions``), so a restarted worker and a live one agree.

Silence ids are deterministic (matchers, window, author, comment), so applying a record
twice is harmless; ids expired here stay expired when their ``add`` record is read
again (the reader re-reads a tail of the topic at start).

>>> from agents.alerts.engine import AlertEngine
>>> from agents.alerts.rules import RuleSet
>>> engine = AlertEngine(RuleSet(()))
>>> follower = SilenceFollower()
>>> add = {"action": "add", "matchers": {"portfolio": "beta"}, "starts_ms": 0, "ends_ms": 10,
...        "actor": "olga", "comment": ""}
>>> sid = follower.apply(engine, add)
>>> [s.id for s in engine.silences()] == [sid]
True
>>> follower.apply(engine, {"action": "delete", "id": sid})
>>> follower.apply(engine, add) is None, engine.silences()
(True, [])
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from agents.alerts.errors import AlertsError

log = logging.getLogger(__name__)

EXPIRED_IDS = 10_000
"""Expired silence ids remembered, so a re-read ``add`` record does not revive them."""


class SilenceFollower:
    """Applies silence records (``add`` / ``delete`` payloads) to an alert engine, idempotently."""

    def __init__(self) -> None:
        self._expired: set[str] = set()
        self._expired_order: deque[str] = deque()
        self.applied = 0

    def _forget_later(self, silence_id: str) -> None:
        if silence_id in self._expired:
            return
        self._expired.add(silence_id)
        self._expired_order.append(silence_id)
        if len(self._expired_order) > EXPIRED_IDS:
            self._expired.discard(self._expired_order.popleft())

    def apply(self, engine: Any, payload: Mapping[str, Any]) -> str | None:
        """Apply one record's payload; returns the id of a silence it added, else None."""
        action = payload.get("action")
        if action == "delete":
            silence_id = str(payload.get("id"))
            self._forget_later(silence_id)
            if engine.delete_silence(silence_id):
                self.applied += 1
            return None
        known = {s.id for s in engine.silences()}
        if action != "add" or payload.get("id") in self._expired or payload.get("id") in known:
            return None
        try:
            sid = str(engine.add_silence(payload["matchers"], int(payload["starts_ms"]),
                                         int(payload["ends_ms"]), str(payload["actor"]),
                                         str(payload.get("comment", ""))))
        except (AlertsError, KeyError, TypeError, ValueError) as exc:
            log.warning("silence record %s not applied: %s", payload.get("id"), exc)
            return None
        if sid in self._expired:  # expired here already (the record carried no id)
            engine.delete_silence(sid)
            return None
        if sid in known:
            return None
        self.applied += 1
        return sid

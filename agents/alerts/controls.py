"""Kill-switch decisions: HALT / REDUCE / RESUME per scope, from rule actions and operators.

A scope is ``strategy:<id>``, ``portfolio:<id>`` or ``global``. Each scope has a
:class:`TradingState`; a bot obeys the most restrictive state among ``global``, its
portfolio and its strategy (:meth:`KillSwitch.effective_state`).

Rules only ever tighten (ACTIVE -> REDUCING -> HALTED): a rule never resumes trading,
and a resolved alert leaves the scope halted until an operator sends RESUME. Actions
run even when the alert's notifications are silenced: a silence mutes people, not the
kill switch.

>>> ks = KillSwitch()
>>> c = ks.command("strategy:s1", "HALT", actor="oncall-1", reason="manual", ts_ms=5)
>>> (c.command, c.state, ks.effective_state("s1", "p1").value)
('HALT', 'HALTED', 'HALTED')
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.alerts.errors import ControlError

COMMANDS = ("HALT", "REDUCE", "RESUME")


class TradingState(enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_TARGET = {"HALT": TradingState.HALTED, "REDUCE": TradingState.REDUCING,
           "RESUME": TradingState.ACTIVE}


def _check_scope(scope: str) -> None:
    kind, _, ident = scope.partition(":")
    if scope == "global" or (kind in ("strategy", "portfolio") and ident):
        return
    raise ControlError(f"bad control scope {scope!r}: use strategy:<id>, portfolio:<id> or global")


@dataclass(frozen=True)
class Control:
    """One kill-switch record, as published on ``risk.controls`` (key: ``scope``)."""

    control_id: str
    scope: str
    command: str
    state: str
    reason: str
    actor: str
    ts_ms: int
    alert_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"control_id": self.control_id, "scope": self.scope, "command": self.command,
                "state": self.state, "reason": self.reason, "actor": self.actor,
                "ts_ms": self.ts_ms, "alert_id": self.alert_id, "params": dict(self.params)}


def control_id(scope: str, command: str, actor: str, ts_ms: int) -> str:
    return hashlib.sha256(f"{scope}|{command}|{actor}|{ts_ms}".encode()).hexdigest()[:32]


class KillSwitch:
    """Trading state per scope; plain data (:meth:`to_dict` / :meth:`from_dict`)."""

    def __init__(self, states: Mapping[str, str] | None = None) -> None:
        self._states: dict[str, TradingState] = {
            k: TradingState(v) for k, v in (states or {}).items()}

    def state(self, scope: str) -> TradingState:
        return self._states.get(scope, TradingState.ACTIVE)

    def effective_state(self, strategy: str | None = None,
                        portfolio: str | None = None) -> TradingState:
        scopes = ["global"]
        if portfolio:
            scopes.append(f"portfolio:{portfolio}")
        if strategy:
            scopes.append(f"strategy:{strategy}")
        return max((self.state(s) for s in scopes), key=_RANK.__getitem__)

    def _record(self, scope: str, command: str, actor: str, reason: str, ts_ms: int,
                alert_id: str | None, params: Mapping[str, Any]) -> Control:
        new = _TARGET[command]
        if new is TradingState.ACTIVE:
            self._states.pop(scope, None)
        else:
            self._states[scope] = new
        return Control(control_id(scope, command, actor, ts_ms), scope, command, new.value,
                       reason, actor, ts_ms, alert_id, dict(params))

    def command(self, scope: str, command: str, *, actor: str, reason: str, ts_ms: int,
                params: Mapping[str, Any] | None = None) -> Control:
        """An operator's command: any transition is allowed, RESUME included."""
        _check_scope(scope)
        command = command.upper()
        if command not in COMMANDS:
            raise ControlError(f"bad control command {command!r}: one of {', '.join(COMMANDS)}")
        return self._record(scope, command, actor, reason, ts_ms, None, params or {})

    def from_alert(self, event: Mapping[str, Any]) -> Control | None:
        """The control a ``firing`` alert event with an action orders, or None.

        None when the event has no action, is not a ``firing`` transition, or the scope is
        already at least that restrictive (rules never loosen a state)."""
        action = event.get("action")
        if not action or event.get("transition") != "firing":
            return None
        command, scope = str(action["type"]).upper(), str(action["target"])
        _check_scope(scope)
        if _RANK[self.state(scope)] >= _RANK[_TARGET[command]]:
            return None
        params = {k: v for k, v in action.items() if k not in ("type", "scope", "target")}
        reason = f"{event.get('rule')}: {event.get('message', '')}".rstrip(": ")
        return self._record(scope, command, f"rule:{event.get('rule')}", reason,
                            int(event["ts_ms"]), event.get("id"), params)

    def to_dict(self) -> dict[str, str]:
        return {k: v.value for k, v in sorted(self._states.items())}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> KillSwitch:
        return cls(d)

"""The alert engine: rule evaluation plus the alert lifecycle, driven by event time.

The engine never reads a clock. :meth:`AlertEngine.evaluate` takes the event time of
the context it is given; :meth:`AlertEngine.tick` takes the watermark. Every timed
transition (``for`` elapsed, ``keep_firing_for`` elapsed, escalation, repeat) is
stamped with the exact time it became due, not with the time it was noticed, so the
output does not depend on how often ``tick`` runs: replaying the same input yields the
same events, ids included.

The latest context of an entity holds until the next one: a pending alert whose expr
was true at ``t`` fires at ``t + for`` unless a context evaluated false before that.

Labels: an event's ``labels`` are the identity labels (``alertname``, the rule's labels,
the entity label such as ``portfolio``) plus ``severity`` = the rule's base severity, so
the label set stays the same for the alert's whole life (Alertmanager sees one alert).
The event's ``severity`` field is the current, possibly escalated, severity; silences and
inhibition rules match against the current severity.

Sharding: every piece of state belongs to one fingerprint, whose labels carry the
entity id (``portfolio=...``); inhibition compares alerts with equal labels, so an
engine per partition of portfolios sees everything it needs.

>>> from agents.alerts.rules import parse_rules
>>> rs = parse_rules({"rules": [{"name": "BigVaR", "expr": "snapshot.var_95_usd > 10000.0",
...                              "for": "30s", "severity": "high"}]})
>>> eng = AlertEngine(rs)
>>> eng.evaluate("portfolio", "p1", {"var_95_usd": 12000.0}, 1_000)
[]
>>> [(e.transition, e.ts_ms) for e in eng.tick(60_000)]
[('firing', 31000)]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import cel

from agents.alerts.errors import AlertNotFoundError, AlertsError
from agents.alerts.fastpath import Fallback
from agents.alerts.lifecycle import NOTIFYING, AlertEvent, AlertState, event_id, fingerprint
from agents.alerts.matchers import Silence, parse_matchers
from agents.alerts.rules import HEADLINE, SCOPE_VARIABLE, SEVERITY_RANK, Rule, RuleSet, get_path
from agents.alerts.template import PLACEHOLDER, render

MAX_SILENCES = 1_000
"""Most silences one engine holds (expired ones are dropped as the watermark passes them): a
silence beyond it is refused with an ``AlertsError``, so nobody can slow every alert evaluation
by piling them up."""
MAX_SILENCE_COMMENT_CHARS = 2_000


def _value_paths(rule: Rule) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, path) pairs captured into ``values``: expr fields, headline, template names."""
    var = SCOPE_VARIABLE[rule.scope]
    names: dict[str, tuple[str, ...]] = {}
    for p in rule.paths:
        names[".".join(p)] = p
    for h in HEADLINE[rule.scope]:
        names.setdefault(h, (h,))
    if rule.scope == "strategy":
        names.setdefault("portfolio", ("portfolio",))
    for text in rule.annotations.values():
        for m in PLACEHOLDER.finditer(text):
            parts = tuple(m.group(1).split("."))
            if parts[0] == var:
                parts = parts[1:]
            if parts:
                names.setdefault(".".join(parts), parts)
    return tuple(names.items())


class AlertEngine:
    """Evaluates a :class:`RuleSet` and runs every alert's lifecycle.

    Public API: :meth:`evaluate`, :meth:`tick`, :meth:`acknowledge`, :meth:`resolve`,
    :meth:`add_silence`, :meth:`delete_silence`, :meth:`reload`, :meth:`alerts`,
    :meth:`to_dict` / :meth:`from_dict`, :meth:`load_state` (one fingerprint's state; the
    state checkpoints of :mod:`agents.state` restore alert states through it).
    """

    def __init__(self, ruleset: RuleSet, *, fast_path: bool = True) -> None:
        self.fast_path = fast_path
        """Evaluate simple exprs in Python first (:mod:`agents.alerts.fastpath`)."""
        self._states: dict[str, AlertState] = {}
        self._active: dict[tuple[str, str], AlertState] = {}
        self._silences: dict[str, Silence] = {}
        self.evaluations = 0
        self.fallbacks = 0
        """Fast-path evaluations handed to the cel library (missing field, odd type...)."""
        self.late_dropped = 0
        self.errors: dict[str, int] = {}
        self.last_error: dict[str, str] = {}
        self._install(ruleset)

    def _install(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._rules = ruleset.by_name
        self._order = {r.name: i for i, r in enumerate(ruleset.rules)}
        self._paths = {r.name: _value_paths(r) for r in ruleset.rules}
        # critical rules first, so a critical firing in the same context inhibits the rest
        self._eval_order = {
            scope: tuple(sorted(plan.rules, key=lambda r: -SEVERITY_RANK[r.severity]))
            for scope, plan in ruleset.plans.items()}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, scope: str, entity_id: str, context: Mapping[str, Any],
                 ts_ms: int) -> list[AlertEvent]:
        """Evaluate every rule of ``scope`` on one entity's latest context at ``ts_ms``."""
        plan = self.ruleset.plans.get(scope)
        if plan is None:
            return []
        rules = self._eval_order[scope]
        env: Any = None
        fast_env = {SCOPE_VARIABLE[scope]: context, "entity_id": entity_id, "ts_ms": ts_ms}
        self.evaluations += len(rules)
        active = self._active
        touched: list[tuple[Rule, AlertState | None, bool]] = []
        for rule in rules:
            result: Any = None
            if rule.fast is not None and self.fast_path:
                try:
                    result = rule.fast(fast_env)
                except Fallback:
                    self.fallbacks += 1
                    result = None
            if result is None:
                if env is None:  # the CEL activation is built once, on first need
                    env = cel.Context(variables=plan.activation(context, entity_id, ts_ms))
                try:
                    result = rule.program.execute(env)
                except Exception as e:  # missing field, null, type mismatch: not firing
                    self._error(rule.name, e)
                    result = False
                if result is not True and result is not False:
                    self._error(rule.name, TypeError(f"expr returned {type(result).__name__}"))
                    result = False
            st = active.get((rule.name, entity_id))
            if st is None and not result:
                continue
            touched.append((rule, st, result))
        if not touched:
            return []
        events: list[AlertEvent] = []
        for rule, st, result in touched:
            if st is not None and ts_ms < st.cursor_ms:
                self.late_dropped += 1
                continue
            if st is None:
                st = self._new_state(rule, entity_id, ts_ms)
            else:
                self._advance(rule, st, ts_ms, events)
                if st.fingerprint not in self._states:
                    if not result:
                        continue
                    st = self._new_state(rule, entity_id, ts_ms)
            self._observe(rule, st, bool(result), context, ts_ms, events)
        self._check_suppression([s for _, s, _ in touched if s is not None], ts_ms, events)
        return events

    def _error(self, rule: str, exc: Exception) -> None:
        self.errors[rule] = self.errors.get(rule, 0) + 1
        self.last_error[rule] = f"{type(exc).__name__}: {exc}"

    def _new_state(self, rule: Rule, entity_id: str, ts_ms: int) -> AlertState:
        labels = {"alertname": rule.name, **rule.labels}
        if rule.scope != "global":
            labels[rule.scope] = entity_id
        fp = fingerprint(rule.name, labels)
        st = AlertState(fp, rule.name, rule.definition_hash, rule.scope, entity_id, labels,
                        "pending", ts_ms, rule.severity, ts_ms, channels=list(rule.channels))
        self._states[fp] = st
        self._active[(rule.name, entity_id)] = st
        return st

    def _capture(self, rule: Rule, context: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for name, path in self._paths[rule.name]:
            v = get_path(context, path)
            if v is not None:
                out[name] = v
        return out

    def _observe(self, rule: Rule, st: AlertState, result: bool, context: Mapping[str, Any],
                 ts_ms: int, events: list[AlertEvent]) -> None:
        st.cursor_ms = max(st.cursor_ms, ts_ms)
        if result:
            st.last_true_ms = ts_ms
            st.false_since_ms = None
            st.values = self._capture(rule, context)
            if st.status == "pending" and ts_ms - st.active_since_ms >= rule.for_ms:
                self._fire(rule, st, st.active_since_ms + rule.for_ms, events)
            return
        if st.status == "pending":
            self._drop(st)
        elif st.false_since_ms is None:
            st.false_since_ms = ts_ms
            if rule.keep_firing_for_ms == 0:
                self._resolve(rule, st, ts_ms, events, None)

    # ------------------------------------------------------------------ timed transitions

    def tick(self, watermark_ms: int) -> list[AlertEvent]:
        """Apply every timed transition due at or before the watermark."""
        events: list[AlertEvent] = []
        for fp in sorted(self._states):
            st = self._states.get(fp)
            if st is None or watermark_ms < st.cursor_ms:
                continue
            self._advance(self._rules[st.rule], st, watermark_ms, events)
        self._check_suppression(list(self._states.values()), watermark_ms, events)
        for sid in [s.id for s in self._silences.values() if s.ends_ms <= watermark_ms]:
            del self._silences[sid]
        events.sort(key=lambda e: (e.ts_ms, self._order.get(e.rule, 0), e.fingerprint))
        return events

    def _next_due(self, rule: Rule, st: AlertState) -> tuple[int, str] | None:
        cands = self._candidates(rule, st)
        if not cands:
            return None
        due, _, kind = min(cands)
        return due, kind

    def _candidates(self, rule: Rule, st: AlertState) -> list[tuple[int, int, str]]:
        """Timed transitions of ``st``: ``(due_ms, rank, kind)``."""
        cands: list[tuple[int, int, str]] = []
        if st.status == "pending":
            cands.append((st.active_since_ms + rule.for_ms, 1, "firing"))
        else:
            if st.starts_at_ms is None:  # firing states always carry their start
                raise AlertsError(f"alert of rule {rule.name!r} is {st.status} without a start time")
            if st.false_since_ms is not None:
                cands.append((st.false_since_ms + rule.keep_firing_for_ms, 0, "resolved"))
            if not st.acknowledged and st.escalation_level < len(rule.escalate):
                step = rule.escalate[st.escalation_level]
                cands.append((st.starts_at_ms + step.after_ms, 2, "escalated"))
            if (rule.cooldown_ms > 0 and not st.acknowledged and not st.suppressed
                    and st.last_notified_ms is not None):
                cands.append((st.last_notified_ms + rule.cooldown_ms, 3, "repeat"))
        return cands

    def _last_owed_repeat(self, rule: Rule, st: AlertState, due: int, now_ms: int) -> int:
        """A gap in event time can owe many repeats; the latest one before ``now_ms`` and before
        the next other transition stands for them all (O(1), not one event per cooldown)."""
        others = [d for d, _, kind in self._candidates(rule, st) if kind != "repeat"]
        limit = min([now_ms, *(d - 1 for d in others)])
        if limit <= due:
            return due
        return due + (limit - due) // rule.cooldown_ms * rule.cooldown_ms

    def _advance(self, rule: Rule, st: AlertState, now_ms: int,
                 events: list[AlertEvent]) -> None:
        while st.fingerprint in self._states:
            nxt = self._next_due(rule, st)
            if nxt is None or nxt[0] > now_ms:
                break
            due, kind = nxt
            if kind == "firing":
                self._fire(rule, st, due, events)
            elif kind == "resolved":
                self._resolve(rule, st, due, events, None)
            elif kind == "escalated":
                self._escalate(rule, st, due, events)
            else:
                events.append(self._emit(rule, st, "repeat", self._last_owed_repeat(rule, st, due, now_ms)))
        if st.fingerprint in self._states:
            st.cursor_ms = max(st.cursor_ms, now_ms)

    def _fire(self, rule: Rule, st: AlertState, ts_ms: int, events: list[AlertEvent]) -> None:
        st.status = "firing"
        st.starts_at_ms = ts_ms
        events.append(self._emit(rule, st, "firing", ts_ms))

    def _escalate(self, rule: Rule, st: AlertState, ts_ms: int,
                  events: list[AlertEvent]) -> None:
        if st.starts_at_ms is None:  # only a firing alert escalates
            raise AlertsError(f"alert of rule {rule.name!r} escalates without a start time")
        prev = st.severity
        while (st.escalation_level < len(rule.escalate)
               and st.starts_at_ms + rule.escalate[st.escalation_level].after_ms <= ts_ms):
            step = rule.escalate[st.escalation_level]
            st.escalation_level += 1
            st.severity = step.severity or st.severity
            st.channels = st.channels + [c for c in step.channels if c not in st.channels]
        st.escalated_from = prev
        st.escalated_at_ms = ts_ms
        events.append(self._emit(rule, st, "escalated", ts_ms))

    def _resolve(self, rule: Rule, st: AlertState, ts_ms: int, events: list[AlertEvent],
                 actor: str | None, comment: str | None = None) -> None:
        if st.status == "firing":
            events.append(self._emit(rule, st, "resolved", ts_ms, resolved_by=actor,
                                     comment=comment))
        self._drop(st)

    def _drop(self, st: AlertState) -> None:
        self._states.pop(st.fingerprint, None)
        if self._active.get((st.rule, st.entity_id)) is st:
            del self._active[(st.rule, st.entity_id)]

    # ------------------------------------------------------------------ suppression

    def _match_labels(self, st: AlertState) -> dict[str, str]:
        return {**st.labels, "severity": st.severity}

    def _silenced(self, st: AlertState, ts_ms: int) -> bool:
        if not self._silences:
            return False
        labels = self._match_labels(st)
        return any(s.matches(labels, ts_ms) for s in self._silences.values())

    def _inhibited(self, st: AlertState) -> bool:
        if not self.ruleset.inhibit_rules:
            return False
        target = self._match_labels(st)
        for other in self._states.values():
            if other is st or other.status != "firing":
                continue
            src = self._match_labels(other)
            if any(r.inhibits(src, target) for r in self.ruleset.inhibit_rules):
                return True
        return False

    def _check_suppression(self, states: Iterable[AlertState], ts_ms: int,
                           events: list[AlertEvent]) -> None:
        for st in states:
            if st.fingerprint not in self._states or st.status != "firing":
                continue
            rule = self._rules[st.rule]
            suppressed = self._silenced(st, ts_ms) or self._inhibited(st)
            if suppressed and not st.suppressed:
                events.append(self._emit(rule, st, "silenced", ts_ms))
                st.suppressed = True
            elif not suppressed and st.suppressed:
                st.suppressed = False
                if st.last_notified_ms is None or (
                        rule.cooldown_ms > 0 and not st.acknowledged
                        and ts_ms - st.last_notified_ms >= rule.cooldown_ms):
                    events.append(self._emit(rule, st, "repeat", ts_ms))

    # ------------------------------------------------------------------ events

    def _emit(self, rule: Rule, st: AlertState, transition: str, ts_ms: int, *,
              resolved_by: str | None = None, comment: str | None = None) -> AlertEvent:
        silenced = self._silenced(st, ts_ms)
        inhibited = self._inhibited(st)
        notify = transition in NOTIFYING and not silenced and not inhibited
        if transition in ("firing", "repeat", "escalated"):
            st.suppressed = silenced or inhibited
        if notify:
            st.last_notified_ms = ts_ms
        return self._build(rule, st, transition, ts_ms, notify, silenced, inhibited,
                           resolved_by, comment)

    def _build(self, rule: Rule, st: AlertState, transition: str, ts_ms: int, notify: bool,
               silenced: bool, inhibited: bool, resolved_by: str | None = None,
               comment: str | None = None) -> AlertEvent:
        """The event for ``st`` as it is now (no side effects)."""
        resolved = transition == "resolved"
        template_values: dict[str, Any] = {**st.values, **st.labels, "severity": st.severity,
                                           "rule": rule.name, "entity_id": st.entity_id}
        annotations = {k: render(v, template_values) for k, v in rule.annotations.items()}
        if comment:
            annotations["comment"] = comment
        starts = st.starts_at_ms if st.starts_at_ms is not None else st.active_since_ms
        return AlertEvent(
            event_id=event_id(st.fingerprint, transition, ts_ms), id=st.id or "",
            fingerprint=st.fingerprint, rule=rule.name, scope=st.scope,
            entity_id=st.entity_id, transition=transition,
            status="resolved" if resolved else st.status, severity=st.severity,
            escalation_level=st.escalation_level, escalated_from=st.escalated_from,
            escalated_at_ms=st.escalated_at_ms,
            labels={**st.labels, "severity": rule.severity}, annotations=annotations,
            starts_at_ms=starts, ends_at_ms=ts_ms if resolved else None,
            ts_ms=ts_ms, values=dict(st.values), channels=tuple(st.channels), notify=notify,
            silenced=silenced, inhibited=inhibited, acknowledged=st.acknowledged,
            acknowledged_by=st.acknowledged_by, acknowledged_at_ms=st.acknowledged_at_ms,
            ack_comment=st.ack_comment, resolved_by=resolved_by,
            action=self._action(rule, st))

    def views(self, ts_ms: int, include_pending: bool = False) -> list[dict[str, Any]]:
        """Current alerts as event-shaped dicts (``transition: "state"``), for the API and
        dashboard: same keys as :meth:`AlertEvent.to_dict`, no side effects."""
        out = []
        for st in self.alerts(include_pending):
            silenced, inhibited = self._silenced(st, ts_ms), self._inhibited(st)
            ev = self._build(self._rules[st.rule], st, "state", ts_ms, False, silenced,
                             inhibited)
            out.append(ev.to_dict())
        return out

    def _action(self, rule: Rule, st: AlertState) -> dict[str, Any] | None:
        if rule.action is None:
            return None
        a = rule.action
        if a.scope == "global":
            target = "global"
        elif a.scope == "portfolio" and rule.scope == "strategy":
            pf = st.values.get("portfolio")
            target = f"portfolio:{pf}" if pf else f"strategy:{st.entity_id}"
        else:
            target = f"{a.scope}:{st.entity_id}"
        return {**a.to_dict(), "target": target}

    # ------------------------------------------------------------------ operators

    def _find(self, key: str) -> AlertState:
        st = self._states.get(key)
        if st is None:
            st = next((s for s in self._states.values() if s.id == key), None)
        if st is None or st.status != "firing":
            raise AlertNotFoundError(f"no firing alert with fingerprint or id {key!r}")
        return st

    def acknowledge(self, key: str, actor: str, comment: str, ts_ms: int) -> list[AlertEvent]:
        """Acknowledge a firing alert (by fingerprint or alert id): stops escalation and
        repeats. Returns the events (the last is ``acknowledged``); ``[]`` if already acked.
        Raises :class:`AlertNotFoundError` when no such alert is firing."""
        st = self._find(key)
        rule = self._rules[st.rule]
        events: list[AlertEvent] = []
        if ts_ms >= st.cursor_ms:
            self._advance(rule, st, ts_ms, events)
        if st.fingerprint not in self._states or st.acknowledged:
            return events
        st.acknowledged, st.acknowledged_by = True, actor
        st.acknowledged_at_ms, st.ack_comment = ts_ms, comment
        events.append(self._emit(rule, st, "acknowledged", ts_ms))
        return events

    def resolve(self, key: str, actor: str, comment: str, ts_ms: int) -> list[AlertEvent]:
        """Resolve a firing alert by hand; if its expr stays true a new alert starts over."""
        st = self._find(key)
        rule = self._rules[st.rule]
        events: list[AlertEvent] = []
        if ts_ms >= st.cursor_ms:
            self._advance(rule, st, ts_ms, events)
        if st.fingerprint in self._states:
            self._resolve(rule, st, max(ts_ms, st.cursor_ms), events, actor, comment)
        return events

    def forget(self, scope: str, entity_id: str, ts_ms: int) -> list[AlertEvent]:
        """An entity is gone (portfolio closed, feed retired): resolve and drop its alerts
        (``resolved_by='entity-removed'``)."""
        events: list[AlertEvent] = []
        for st in sorted(self._states.values(), key=lambda s: s.fingerprint):
            if st.scope == scope and st.entity_id == entity_id:
                self._resolve(self._rules[st.rule], st, max(ts_ms, st.cursor_ms), events,
                              "entity-removed")
        return events

    def add_silence(self, matchers: Any, starts_ms: int, ends_ms: int, author: str,
                    comment: str) -> str:
        """Add a silence; returns its deterministic id. Matchers: see :mod:`matchers`."""
        try:
            ms = parse_matchers(matchers)
        except ValueError as e:
            raise AlertsError(f"bad silence: {e}") from None
        if not ms:
            raise AlertsError("bad silence: at least one matcher is needed")
        if ends_ms <= starts_ms:
            raise AlertsError("bad silence: ends_ms must be after starts_ms")
        if len(comment) > MAX_SILENCE_COMMENT_CHARS or len(author) > MAX_SILENCE_COMMENT_CHARS:
            raise AlertsError(f"bad silence: comment or author longer than {MAX_SILENCE_COMMENT_CHARS} "
                              "characters")
        raw = json.dumps([[m.to_dict() for m in ms], starts_ms, ends_ms, author, comment],
                         sort_keys=True)
        sid = hashlib.sha256(raw.encode()).hexdigest()[:16]
        if sid not in self._silences and len(self._silences) >= MAX_SILENCES:
            raise AlertsError(f"too many silences: {len(self._silences)} are active or pending (at most "
                              f"{MAX_SILENCES}); expire some first")
        self._silences[sid] = Silence(sid, ms, starts_ms, ends_ms, author, comment)
        return sid

    def delete_silence(self, silence_id: str) -> bool:
        """Expire a silence now; True if it existed."""
        return self._silences.pop(silence_id, None) is not None

    def silences(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.starts_ms, s.id))

    def alerts(self, include_pending: bool = False) -> list[AlertState]:
        """Current alert states (firing, and pending if asked), in rule order."""
        out = [s for s in self._states.values() if include_pending or s.status == "firing"]
        return sorted(out, key=lambda s: (self._order.get(s.rule, 0), s.fingerprint))

    # ------------------------------------------------------------------ rules reload

    def reload(self, ruleset: RuleSet, ts_ms: int) -> list[AlertEvent]:
        """Swap the rule set; states of unchanged rules (same name and definition hash)
        are kept, alerts of removed or changed rules resolve (``resolved_by='reload'``)."""
        events: list[AlertEvent] = []
        new = ruleset.by_name
        for st in sorted(self._states.values(), key=lambda s: s.fingerprint):
            r = new.get(st.rule)
            if r is None or r.definition_hash != st.rule_hash:
                self._resolve(self._rules[st.rule], st, max(ts_ms, st.cursor_ms), events,
                              "reload")
        self._install(ruleset)
        return events

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1,
                "states": [self._states[fp].to_dict() for fp in sorted(self._states)],
                "silences": [s.to_dict() for s in self.silences()],
                "evaluations": self.evaluations, "late_dropped": self.late_dropped,
                "errors": dict(self.errors)}

    @classmethod
    def from_dict(cls, ruleset: RuleSet, data: Mapping[str, Any], *,
                  fast_path: bool = True) -> AlertEngine:
        eng = cls(ruleset, fast_path=fast_path)
        for d in data.get("states", []):
            eng.load_state(d)
        for s in data.get("silences", []):
            sil = Silence.from_dict(s)
            eng._silences[sil.id] = sil
        eng.evaluations = int(data.get("evaluations", 0))
        eng.late_dropped = int(data.get("late_dropped", 0))
        eng.errors = dict(data.get("errors", {}))
        return eng

    def load_state(self, d: Mapping[str, Any]) -> None:
        """Restore one fingerprint's state (an ``AlertState.to_dict()``); ignored if its rule changed."""
        st = AlertState.from_dict(dict(d))
        rule = self._rules.get(st.rule)
        if rule is None or rule.definition_hash != st.rule_hash:
            return
        self._states[st.fingerprint] = st
        self._active[(st.rule, st.entity_id)] = st

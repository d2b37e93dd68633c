"""Routing, grouping, digests and rate limits, driven by event time (pure, no I/O).

* :meth:`Router.channels_for` — the event's own ``channels`` plus every config
  route matching its labels / severity / transition.
* :meth:`Router.ingest` — add an event (its ``ts_ms`` is "now") and return the
  batches that are due; :meth:`Router.tick` — advance the clock (the watermark)
  while the input is idle and return what became due.

Grouping works as Alertmanager's does: the first event of a group waits
``group_wait``; later events of the group go out at most every
``group_interval``. Repeated low-severity events collect into a digest sent every
``digest.interval_secs``. A channel over its ``rate_limit_per_minute`` holds its
batches and sends them later merged into one — held, never dropped.

>>> from agents.notify.config import parse_config
>>> cfg = parse_config({"grouping": {"group_wait_secs": 10, "group_interval_secs": 60},
...     "channels": {"hook": {"type": "webhook", "url": "http://x"}}}, {})
>>> r = Router(cfg)
>>> ev = {"event_id": "e1", "id": "a", "fingerprint": "f", "severity": "high",
...       "status": "firing", "transition": "firing", "ts_ms": 1000, "channels": ["hook"]}
>>> r.ingest(ev, ["hook"]), [b.event_ids for b in r.tick(11_000)]
([], [('e1',)])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from agents.notify.config import ChannelConfig, NotifyConfig
from agents.notify.model import AlertEvent, Batch, labels_of, should_notify

_MINUTE_MS = 60_000
GroupKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RouteDecision:
    """Where an event goes: deliverable channels, and names we cannot deliver to."""

    channels: tuple[str, ...]
    unknown: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()


@dataclass
class _Group:
    events: list[AlertEvent] = field(default_factory=list)
    next_flush_ms: int = 0
    last_flush_ms: int | None = None


@dataclass
class _Limiter:
    sent_ms: deque[int] = field(default_factory=deque)
    held: list[Batch] = field(default_factory=list)


def _secs_to_ms(secs: float) -> int:
    return round(secs * 1000)


class Router:
    """Pure routing state machine; feed it events and watermarks, get batches back."""

    def __init__(self, config: NotifyConfig) -> None:
        self._config = config
        self._groups: dict[tuple[str, str, GroupKey], _Group] = {}
        self._limiters: dict[str, _Limiter] = {name: _Limiter() for name in config.channels}
        self._now_ms = 0

    @property
    def now_ms(self) -> int:
        """Highest event time seen (the router's clock)."""
        return self._now_ms

    # -- routing -----------------------------------------------------------
    def channels_for(self, event: AlertEvent) -> RouteDecision:
        """The event's channels plus matching config routes, de-duplicated in order."""
        if not should_notify(event):
            return RouteDecision(())
        names = list(event.get("channels") or [])
        labels = labels_of(event)
        for route in self._config.routes:
            if self._route_matches(route.match, route.severities, route.transitions, event, labels):
                names.extend(route.channels)
        ok: list[str] = []
        unknown: list[str] = []
        disabled: list[str] = []
        for name in dict.fromkeys(names):
            channel = self._config.channels.get(name)
            if channel is None:
                unknown.append(name)
            elif not channel.enabled:
                disabled.append(name)
            else:
                ok.append(name)
        return RouteDecision(tuple(ok), tuple(unknown), tuple(disabled))

    @staticmethod
    def _route_matches(
        match: dict[str, str],
        severities: tuple[str, ...],
        transitions: tuple[str, ...],
        event: AlertEvent,
        labels: dict[str, str],
    ) -> bool:
        if severities and event.get("severity") not in severities:
            return False
        if transitions and event.get("transition") not in transitions:
            return False
        fields = {**labels, "rule": str(event.get("rule", "")),
                  "rule_name": str(event.get("rule_name", ""))}
        return all(fields.get(k) == v for k, v in match.items())

    # -- grouping ------------------------------------------------------------
    def group_key(self, event: AlertEvent) -> GroupKey:
        labels = labels_of(event)
        return tuple((name, labels.get(name, "")) for name in self._config.grouping.group_by)

    def _is_digest(self, event: AlertEvent) -> bool:
        digest = self._config.digest
        return (
            digest.enabled
            and event.get("severity") in digest.severities
            and event.get("transition") in digest.transitions
        )

    def ingest(self, event: AlertEvent, channels: Iterable[str]) -> list[Batch]:
        """Add ``event`` for ``channels`` (normally ``channels_for(event).channels``)."""
        now = max(self._now_ms, int(event["ts_ms"]))
        ready: list[Batch] = []
        for name in channels:
            channel = self._config.channels[name]
            if not channel.grouping:
                ready.append(Batch.of(name, [event], kind="single", flush_ms=now))
            elif self._is_digest(event):
                self._add(name, "digest", (), event, now, _secs_to_ms(self._digest_secs()))
            else:
                self._add(name, "group", self.group_key(event), event, now, None)
        return self._limit(ready, now) + self.tick(now)

    def _digest_secs(self) -> float:
        return self._config.digest.interval_secs

    def _add(
        self, channel: str, kind: str, key: GroupKey, event: AlertEvent, now: int, wait: int | None
    ) -> None:
        grouping = self._config.grouping
        group = self._groups.setdefault((channel, kind, key), _Group())
        if not group.events:
            if wait is None:
                wait = _secs_to_ms(grouping.group_wait_secs)
            if group.last_flush_ms is None:
                group.next_flush_ms = now + wait
            else:
                interval = wait if kind == "digest" else _secs_to_ms(grouping.group_interval_secs)
                group.next_flush_ms = max(now, group.last_flush_ms + interval)
        group.events.append(event)

    def tick(self, now_ms: int) -> list[Batch]:
        """Advance the clock to ``now_ms`` and return every batch now due, in time order."""
        now = max(self._now_ms, now_ms)
        self._now_ms = now
        due: list[Batch] = []
        for (channel, kind, key), group in sorted(self._groups.items(), key=_group_order):
            if group.events and group.next_flush_ms <= now:
                batch_kind = "single" if len(group.events) == 1 and kind == "group" else kind
                due.append(
                    Batch.of(channel, group.events, kind=batch_kind,  # type: ignore[arg-type]
                             flush_ms=group.next_flush_ms, group_key=key)
                )
                group.last_flush_ms = group.next_flush_ms
                group.events = []
        self._forget_idle(now)
        return self._release_held(now) + self._limit(due, now)

    def _forget_idle(self, now: int) -> None:
        """Drop empty groups whose interval has passed, so memory stays bounded."""
        horizon = max(_secs_to_ms(self._config.grouping.group_interval_secs),
                      _secs_to_ms(self._digest_secs()))
        stale = [k for k, g in self._groups.items()
                 if not g.events and (g.last_flush_ms or 0) + horizon < now]
        for key in stale:
            del self._groups[key]

    # -- rate limits ---------------------------------------------------------
    def _allow(self, channel: ChannelConfig, limiter: _Limiter, now: int) -> bool:
        if channel.rate_limit_per_minute is None:
            return True
        while limiter.sent_ms and limiter.sent_ms[0] <= now - _MINUTE_MS:
            limiter.sent_ms.popleft()
        return len(limiter.sent_ms) < channel.rate_limit_per_minute

    def _limit(self, batches: list[Batch], now: int) -> list[Batch]:
        out: list[Batch] = []
        for batch in batches:
            channel = self._config.channels[batch.channel]
            limiter = self._limiters[batch.channel]
            if not limiter.held and self._allow(channel, limiter, now):
                limiter.sent_ms.append(now)
                out.append(batch)
            else:
                limiter.held.append(batch)
        return out

    def _release_held(self, now: int) -> list[Batch]:
        """Send held batches as one merged batch per channel once the limit allows."""
        out: list[Batch] = []
        for name, limiter in self._limiters.items():
            if not limiter.held or not self._allow(self._config.channels[name], limiter, now):
                continue
            held, limiter.held = limiter.held, []
            limiter.sent_ms.append(now)
            if len(held) == 1:
                out.append(held[0])
                continue
            events = [e for b in held for e in b.events]
            out.append(Batch.of(name, events, kind="group", flush_ms=now))
        return out

    def held_count(self, channel: str) -> int:
        """Batches a channel holds because of its rate limit."""
        return len(self._limiters[channel].held)


def _group_order(item: tuple[tuple[str, str, GroupKey], _Group]) -> tuple[int, str, str, GroupKey]:
    (channel, kind, key), group = item
    return (group.next_flush_ms, channel, kind, key)

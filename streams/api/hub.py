"""In-process pub/sub for the live pages: snapshots, alert events and controls as produced.

The host calls :func:`notify_listeners` with the outputs it has just published; the
replicated snapshot reader feeds what other workers published. The hub dedupes the two
paths, keeps a short VaR history per portfolio, the latest state of recent alerts
(resolved ones included), the recent controls and notification delivery outcomes (the
``notify`` chain's ``delivery`` records on ``risk.audit``), and fans events out to the
``/api/v1/stream`` subscribers. Silence records on ``risk.audit`` go to the audit
listeners (each worker applies every worker's silences, see ``streams.api.follow``).
Everything is synchronous and bounded: a subscriber that falls behind is dropped rather
than slowing the pipeline down.

>>> hub = EventHub()
>>> sub = hub.subscribe()
>>> hub.publish([("risk.snapshots", "p1", {"portfolio": "p1", "ts_ms": 1000, "var_95_usd": 5.0})])
1
>>> sub.queue.get_nowait()[0]
'snapshot'
>>> hub.history("p1")[0]["var_95_usd"]
5.0
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.audit.trust import mac_ok
from streams import metrics

EVENT_OF_TOPIC = {"risk.snapshots": "snapshot", "risk.alerts": "alert", "risk.controls": "control"}
HISTORY_POINTS = 3_600
RECENT_ALERTS = 1_000
RECENT_CONTROLS = 200
RECENT_DELIVERIES = 2_000
AUDIT_KINDS = frozenset({"silence", "delivery"})
"""Audit record kinds the hub keeps or hands on; every other audit record is ignored."""
SEEN_KEYS = 20_000
CLOSE = ("close", None)


def history_point(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The figures the VaR chart draws for one snapshot."""
    backtest = snapshot.get("backtest") or {}
    return {
        "ts_ms": snapshot.get("ts_ms", 0),
        "var_95_usd": snapshot.get("var_95_usd", 0.0),
        "var_99_usd": snapshot.get("var_99_usd", 0.0),
        "es_99_usd": snapshot.get("es_99_usd", 0.0),
        "total_exposure_usd": snapshot.get("total_exposure_usd", 0.0),
        "rating": snapshot.get("rating"),
        "backtest_exceptions": backtest.get("exceptions", 0),
    }


def _dedupe_key(topic: str, value: dict[str, Any]) -> str:
    if topic == "risk.snapshots":
        return f"s|{value.get('portfolio')}|{value.get('ts_ms')}"
    if topic == "risk.alerts":
        return f"a|{value.get('event_id')}"
    if topic == "risk.audit":
        return f"u|{value.get('stream')}|{value.get('seq')}|{value.get('hash')}"
    return f"c|{value.get('control_id')}"


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1_000))
    dropped: bool = False


class EventHub:
    """Fan-out of pipeline outputs to live subscribers, plus the recent history they need."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        """Latest snapshot per portfolio seen from any worker (newest event time wins)."""
        self.alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.controls: deque[dict[str, Any]] = deque(maxlen=RECENT_CONTROLS)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=RECENT_DELIVERIES)
        """Recent delivery outcomes (``OutcomeRecord`` dicts plus the audit ``seq``), oldest first."""
        self.audit_listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each new silence record of ``risk.audit`` (local and replicated) whose ``mac``
        verifies with :attr:`audit_key`."""
        self.audit_key: bytes | None = None
        """The worker's audit key (``agents.audit.trust``). Silence records are handed on only when
        their tag verifies with it (none without a key: anyone can write ``risk.audit``); delivery
        outcomes are shown when their tag verifies, or unchecked without a key (display only)."""
        self.audit_refused: Counter[str] = Counter()
        """Audit records not kept, by reason (``forged``, ``unsigned``)."""
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.published = 0

    # ---- subscribers ------------------------------------------------------------
    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close_all(self) -> None:
        """Ask every stream to end (web server shutdown)."""
        for sub in list(self._subscribers):
            self._offer(sub, CLOSE)

    def _offer(self, sub: Subscriber, item: tuple[str, Any]) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            sub.dropped = True
            self._subscribers.discard(sub)

    # ---- inputs -------------------------------------------------------------------
    def _first_time(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > SEEN_KEYS:
            self._seen.discard(self._seen_order.popleft())
        return True

    def publish(self, outputs: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
        """Record and fan out the snapshot, alert and control outputs; returns how many."""
        count = 0
        for topic, _key, value in outputs:
            if topic == "risk.audit":
                self._audit_record(value)
                continue
            kind = EVENT_OF_TOPIC.get(topic)
            if kind is None or not self._first_time(_dedupe_key(topic, value)):
                continue
            self._record(topic, value)
            for sub in list(self._subscribers):
                self._offer(sub, (kind, value))
            count += 1
        self.published += count
        return count

    def _record(self, topic: str, value: dict[str, Any]) -> None:
        if topic == "risk.snapshots":
            portfolio = str(value.get("portfolio"))
            latest = self.snapshots.get(portfolio)
            if latest is None or value.get("ts_ms", 0) >= latest.get("ts_ms", 0):
                self.snapshots[portfolio] = value
            points = self._history.setdefault(portfolio, deque(maxlen=HISTORY_POINTS))
            if not points or value.get("ts_ms", 0) > points[-1]["ts_ms"]:
                points.append(history_point(value))
        elif topic == "risk.alerts":
            alert_id = str(value.get("id") or value.get("fingerprint"))
            self.alerts.pop(alert_id, None)
            self.alerts[alert_id] = value
            while len(self.alerts) > RECENT_ALERTS:
                self.alerts.popitem(last=False)
        else:
            self.controls.append(value)

    def _audit_record(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind not in AUDIT_KINDS or not isinstance(record.get("payload"), dict):
            return
        if self.audit_key is not None and not mac_ok(record, self.audit_key):
            self._refuse("forged")
            return
        if self.audit_key is None and kind != "delivery":
            self._refuse("unsigned")
            return
        if not self._first_time(_dedupe_key("risk.audit", record)):
            return
        if kind == "delivery":
            self.deliveries.append({**record["payload"], "audit_seq": record.get("seq")})
            return
        for listener in list(self.audit_listeners):
            listener(record)

    def _refuse(self, reason: str) -> None:
        self.audit_refused[reason] += 1
        metrics.UNTRUSTED_RECORDS.labels("risk.audit", reason).inc()

    def history(self, portfolio: str) -> list[dict[str, Any]]:
        return list(self._history.get(portfolio, ()))


HUB = EventHub()


def notify_listeners(outputs: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
    """Hand freshly published pipeline outputs to the live API (call after publishing)."""
    HUB.publish(outputs)

"""Delivery ledger: per ``(event_id, channel)`` state so a restart neither loses nor repeats.

The ledger wraps any mutable mapping of ``str -> dict`` (a plain dict in tests, a
changelogged Faust table in the worker). Keys are ``"{event_id}@{channel}"``
(channel names cannot contain ``@``); values are JSON-friendly dicts::

    {"state": "pending" | "delivered" | "gave_up", "attempts": int,
     "batch_id": str | None, "updated_ms": int, "event": {...} (only while pending)}

Keeping the event while pending lets :meth:`DeliveryLedger.pending` hand it back
after a crash; a finished entry drops it to keep the table small.

>>> ledger = DeliveryLedger({})
>>> ledger.mark_pending("e1", "slack", {"event_id": "e1"}, now_ms=1)
>>> ledger.state("e1", "slack"), ledger.is_done("e1", "slack")
('pending', False)
>>> ledger.mark_done("e1", "slack", "delivered", attempts=1, now_ms=2)
>>> ledger.state("e1", "slack"), list(ledger.pending())
('delivered', [])
>>> by_fp = DeliveryLedger({}, by_fingerprint=True)
>>> by_fp.mark_pending("e2", "sms", {"event_id": "e2", "fingerprint": "fp9"}, now_ms=1)
>>> list(by_fp._store), by_fp.state("e2", "sms", fingerprint="fp9")
(['fp9'], 'pending')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

LedgerState = Literal["pending", "delivered", "gave_up"]
DONE_STATES = frozenset({"delivered", "gave_up"})


def ledger_key(event_id: str, channel: str) -> str:
    """Store key for one delivery."""
    return f"{event_id}@{channel}"


class Utf8Keys(MutableMapping[str, Any]):
    """A ``str``-keyed view of a ``bytes``-keyed store (a Faust table with ``key_type=bytes``).

    The table's changelog then carries the fingerprint's raw UTF-8 bytes as its key, the
    very bytes ``risk.alerts`` is keyed by, so the producer's partitioner puts each ledger
    entry in the partition of its alert (JSON-encoded keys would hash differently).

    >>> store = {}
    >>> view = Utf8Keys(store)
    >>> view["fp1"] = {"a": 1}
    >>> store, list(view), view["fp1"]
    ({b'fp1': {'a': 1}}, ['fp1'], {'a': 1})
    """

    def __init__(self, store: MutableMapping[bytes, Any]) -> None:
        self._store = store

    def __getitem__(self, key: str) -> Any:
        return self._store[key.encode()]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key.encode()]

    def __iter__(self) -> Iterator[str]:
        for key in list(self._store):
            yield key.decode() if isinstance(key, bytes) else str(key)

    def __len__(self) -> int:
        return len(self._store)


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery the ledger has not seen finish."""

    event_id: str
    channel: str
    event: Mapping[str, Any]
    batch_id: str | None
    attempts: int


class DeliveryLedger:
    """Idempotency record for notifications, backed by an injected mapping.

    ``by_fingerprint=False`` (default): one store key per delivery,
    ``"{event_id}@{channel}"``. ``by_fingerprint=True``: the store key is the
    alert fingerprint and its value maps delivery keys to entries. That layout
    lets a Faust table with ``use_partitioner=True`` put each entry in the same
    partition as the ``risk.alerts`` record (keyed by fingerprint) that caused
    it, so the worker owning the alert also owns its ledger after a rebalance.
    Finished entries beyond ``keep_done`` per fingerprint are pruned, oldest first.
    """

    def __init__(
        self, store: MutableMapping[str, Any], *, by_fingerprint: bool = False,
        keep_done: int = 256,
    ) -> None:
        self._store = store
        self._by_fingerprint = by_fingerprint
        self._keep_done = keep_done

    # -- storage layout ----------------------------------------------------------
    def _read(self, key: str, fingerprint: str | None) -> dict[str, Any] | None:
        if self._by_fingerprint:
            value = (self._store.get(self._fp(fingerprint)) or {}).get(key)
        else:
            value = self._store.get(key)
        return dict(value) if value is not None else None

    def _write(self, key: str, fingerprint: str | None, entry: dict[str, Any]) -> None:
        if not self._by_fingerprint:
            self._store[key] = entry
            return
        fp = self._fp(fingerprint)
        bucket = dict(self._store.get(fp) or {})  # a new value, so a table logs the change
        bucket[key] = entry
        done = sorted((v.get("updated_ms", 0), k) for k, v in bucket.items()
                      if v.get("state") in DONE_STATES)
        for _, old in done[: max(0, len(done) - self._keep_done)]:
            del bucket[old]
        self._store[fp] = bucket

    def _fp(self, fingerprint: str | None) -> str:
        if fingerprint is None:
            raise ValueError("this ledger is keyed by fingerprint; pass fingerprint=")
        return fingerprint

    # -- queries -------------------------------------------------------------------
    def get(self, event_id: str, channel: str, *, fingerprint: str | None = None
            ) -> dict[str, Any] | None:
        return self._read(ledger_key(event_id, channel), fingerprint)

    def state(self, event_id: str, channel: str, *, fingerprint: str | None = None
              ) -> LedgerState | None:
        entry = self.get(event_id, channel, fingerprint=fingerprint)
        return entry["state"] if entry else None

    def is_done(self, event_id: str, channel: str, *, fingerprint: str | None = None) -> bool:
        """True once delivered or given up: a replayed event must not be sent again."""
        return self.state(event_id, channel, fingerprint=fingerprint) in DONE_STATES

    def pending(self) -> Iterator[PendingDelivery]:
        """Every delivery still pending, in store order."""
        for key, value in list(self._store.items()):
            entries = value.items() if self._by_fingerprint else [(key, value)]
            for sub_key, entry in list(entries):
                if not entry or entry.get("state") != "pending" or "event" not in entry:
                    continue
                event_id, _, channel = str(sub_key).rpartition("@")
                yield PendingDelivery(
                    event_id, channel, entry["event"], entry.get("batch_id"),
                    int(entry.get("attempts", 0)),
                )

    # -- updates -------------------------------------------------------------------
    def mark_pending(
        self,
        event_id: str,
        channel: str,
        event: Mapping[str, Any],
        *,
        now_ms: int,
        batch_id: str | None = None,
        attempts: int = 0,
    ) -> None:
        fingerprint = event.get("fingerprint")
        self._write(ledger_key(event_id, channel), None if fingerprint is None else
                    str(fingerprint), {
            "state": "pending",
            "attempts": attempts,
            "batch_id": batch_id,
            "updated_ms": now_ms,
            "event": dict(event),
        })

    def set_batch(
        self, event_id: str, channel: str, batch_id: str, *, now_ms: int,
        fingerprint: str | None = None,
    ) -> None:
        """Remember which batch carries a pending event (regrouped the same after restart)."""
        entry = self.get(event_id, channel, fingerprint=fingerprint)
        if entry and entry["state"] == "pending" and entry.get("batch_id") != batch_id:
            self._write(ledger_key(event_id, channel), fingerprint,
                        {**entry, "batch_id": batch_id, "updated_ms": now_ms})

    def mark_done(
        self, event_id: str, channel: str, state: LedgerState, *, attempts: int, now_ms: int,
        fingerprint: str | None = None,
    ) -> None:
        """Final state; the stored event is dropped to keep the table small."""
        entry = self.get(event_id, channel, fingerprint=fingerprint) or {}
        self._write(ledger_key(event_id, channel), fingerprint, {
            "state": state,
            "attempts": attempts,
            "batch_id": entry.get("batch_id"),
            "updated_ms": now_ms,
        })

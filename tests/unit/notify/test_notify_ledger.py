"""The delivery ledger in both store layouts."""

from __future__ import annotations

from typing import Any

import pytest

from agents.notify.ledger import DeliveryLedger, ledger_key
from tests.unit.notify.helpers import make_event


@pytest.mark.parametrize("by_fingerprint", [False, True])
def test_pending_then_done_round_trip(by_fingerprint: bool) -> None:
    store: dict[str, Any] = {}
    ledger = DeliveryLedger(store, by_fingerprint=by_fingerprint)
    fp = "fp-var95-alpha" if by_fingerprint else None
    ledger.mark_pending("evt-1", "slack", make_event(), now_ms=1)
    ledger.set_batch("evt-1", "slack", "group-abc", now_ms=2, fingerprint=fp)
    [pending] = ledger.pending()
    assert (pending.event_id, pending.channel, pending.batch_id) == ("evt-1", "slack", "group-abc")
    assert pending.event["id"] == "alert-1"
    ledger.mark_done("evt-1", "slack", "gave_up", attempts=5, now_ms=3, fingerprint=fp)
    assert ledger.is_done("evt-1", "slack", fingerprint=fp)
    assert ledger.get("evt-1", "slack", fingerprint=fp) == {
        "state": "gave_up", "attempts": 5, "batch_id": "group-abc", "updated_ms": 3}
    assert list(ledger.pending()) == []


def test_event_ids_with_at_signs_round_trip() -> None:
    ledger = DeliveryLedger({})
    ledger.mark_pending("a@b", "email", make_event(event_id="a@b"), now_ms=1)
    [pending] = ledger.pending()
    assert (pending.event_id, pending.channel) == ("a@b", "email")
    assert ledger_key("a@b", "email") == "a@b@email"


def test_fingerprint_layout_needs_the_fingerprint() -> None:
    ledger = DeliveryLedger({}, by_fingerprint=True)
    with pytest.raises(ValueError, match="fingerprint"):
        ledger.state("evt-1", "slack")


def test_fingerprint_layout_prunes_oldest_finished_entries() -> None:
    store: dict[str, Any] = {}
    ledger = DeliveryLedger(store, by_fingerprint=True, keep_done=2)
    for i in range(4):
        ledger.mark_pending(f"e{i}", "sms", make_event(event_id=f"e{i}"), now_ms=i)
        ledger.mark_done(f"e{i}", "sms", "delivered", attempts=1, now_ms=10 + i,
                         fingerprint="fp-var95-alpha")
    ledger.mark_pending("e9", "sms", make_event(event_id="e9"), now_ms=20)
    assert sorted(store["fp-var95-alpha"]) == ["e2@sms", "e3@sms", "e9@sms"]

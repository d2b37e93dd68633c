"""The audit hash chain detects edits, deletions and reordering; restarts continue it."""

from __future__ import annotations

import itertools

import pytest

from agents.audit.chain import GENESIS_HASH, AuditChain, AuditError, record_hash, verify


def _chain(n: int = 5) -> list[dict]:
    c = AuditChain("alerts")
    return [c.append("alert", {"i": i, "nested": {"b": 1, "a": [1.5, "x"]}}, ts_ms=100 + i)
            for i in range(n)]


def test_records_link_and_verify() -> None:
    recs = _chain()
    assert recs[0]["prev_hash"] == GENESIS_HASH and recs[0]["seq"] == 0
    assert all(r["prev_hash"] == p["hash"] for p, r in itertools.pairwise(recs))
    assert verify(recs) == (True, None, "ok")
    assert recs == _chain()  # deterministic


def test_edit_is_detected_at_its_seq() -> None:
    recs = _chain()
    recs[2] = {**recs[2], "payload": {"i": 99, "nested": {"b": 1, "a": [1.5, "x"]}}}
    ok, bad, reason = verify(recs)
    assert (ok, bad) == (False, 2) and "edited" in reason


def test_edit_with_recomputed_hash_breaks_the_next_link() -> None:
    recs = _chain()
    forged = {**recs[2], "ts_ms": 1}
    forged["hash"] = record_hash(forged)
    recs[2] = forged
    assert verify(recs)[:2] == (False, 3)


def test_deletion_and_reorder_are_detected() -> None:
    recs = _chain()
    assert verify(recs[:2] + recs[3:])[:2] == (False, 3)
    assert verify([recs[0], recs[2], recs[1], *recs[3:]])[:2] == (False, 2)
    assert verify(recs[1:])[:2] == (False, 1)
    assert verify(recs[:-1], expected_head=recs[-1]["hash"])[:2] == (False, 4)


def test_restore_from_last_record_continues_the_chain() -> None:
    recs = _chain(3)
    c = AuditChain.restore("alerts", recs[-1])
    recs.append(c.append("control", {"cmd": "HALT"}, ts_ms=200))
    assert recs[-1]["seq"] == 3 and verify(recs) == (True, None, "ok")
    with pytest.raises(AuditError):
        AuditChain.restore("alerts", {**recs[-1], "seq": 7})
    with pytest.raises(AuditError):
        AuditChain("x").append("k", {"bad": object()}, ts_ms=0)

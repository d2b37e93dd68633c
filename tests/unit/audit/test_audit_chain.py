"""The audit hash chain detects edits, deletions and reordering; restarts continue it."""

from __future__ import annotations

import hashlib
import itertools
import json

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


# ---- known answers: the canonical form is a stored contract --------------------------------------
# The first two records of a chain, their canonical bytes as documented in agents/audit/chain.py
# (the JSON of stream, seq, kind, ts_ms, payload and prev_hash with sorted keys, no whitespace,
# UTF-8) and their sha256, computed outside this code base (`printf '%s' '<bytes>' | sha256sum`).
# A change to the canonical form changes these digests and invalidates every chain already stored.
KNOWN = [
    ("alert", {"id": "a-1", "severity": "high", "values": {"var_95_usd": 12500.5, "n": 3},
               "tags": ["x", "é"]}, 1_767_225_600_000,
     '{"kind":"alert","payload":{"id":"a-1","severity":"high","tags":["x","é"],"values":{"n":3,'
     '"var_95_usd":12500.5}},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
     '"seq":0,"stream":"risk-p0","ts_ms":1767225600000}',
     "4d5bfa5757e15e2b8c1c0246c09ab2d0141f13cb29b11ab5b10489587413c01f"),
    ("control", {"scope": "global", "command": "HALT"}, 1_767_225_601_000,
     '{"kind":"control","payload":{"command":"HALT","scope":"global"},'
     '"prev_hash":"4d5bfa5757e15e2b8c1c0246c09ab2d0141f13cb29b11ab5b10489587413c01f","seq":1,'
     '"stream":"risk-p0","ts_ms":1767225601000}',
     "6d37787c60fc1eb4b1a652b84003a946187736c93778d57eaba7340582b005f7"),
]


def test_record_hashes_match_known_answers() -> None:
    chain = AuditChain("risk-p0")
    records = []
    for kind, payload, ts_ms, canonical_text, digest in KNOWN:
        canonical_bytes = canonical_text.encode("utf-8")
        assert hashlib.sha256(canonical_bytes).hexdigest() == digest  # the known answer itself
        record = chain.append(kind, payload, ts_ms=ts_ms)
        records.append(record)
        fields = {k: record[k] for k in ("stream", "seq", "kind", "ts_ms", "payload", "prev_hash")}
        # an independent serialiser (the standard library's json) gives the same canonical bytes
        assert json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() \
            == canonical_bytes
        assert record["hash"] == record_hash(record) == digest
    assert verify(records) == (True, None, "ok")


def test_a_stored_known_record_verifies_and_an_edit_does_not() -> None:
    """A record as stored on risk.audit (written by an earlier version) still verifies."""
    kind, payload, ts_ms, _, digest = KNOWN[0]
    stored = {"stream": "risk-p0", "seq": 0, "kind": kind, "ts_ms": ts_ms, "payload": payload,
              "prev_hash": GENESIS_HASH, "hash": digest}
    assert verify([stored]) == (True, None, "ok")
    assert verify([{**stored, "ts_ms": ts_ms + 1}])[:2] == (False, 0)
    assert AuditChain.restore("risk-p0", stored).prev_hash == digest

"""What a restarted or rebuilt worker may publish: heads per output entity, not per topic."""

from __future__ import annotations

from agents.audit.chain import AuditChain
from streams.recovery import OutputHeads


def _alert(fingerprint: str, ts_ms: int, event_id: str) -> dict:
    return {"fingerprint": fingerprint, "ts_ms": ts_ms, "event_id": event_id}


def test_older_and_same_time_seen_outputs_are_published_already() -> None:
    heads = OutputHeads()
    heads.add("risk.alerts", _alert("fp-a", 1_000, "e1"))
    heads.add("risk.alerts", _alert("fp-a", 2_000, "e2"))
    assert heads.already_published("risk.alerts", _alert("fp-a", 1_500, "e-mid"))
    assert heads.already_published("risk.alerts", _alert("fp-a", 2_000, "e2"))
    assert not heads.already_published("risk.alerts", _alert("fp-a", 2_000, "e3"))
    assert not heads.already_published("risk.alerts", _alert("fp-a", 2_001, "e4"))


def test_a_taken_over_entity_keeps_its_own_head() -> None:
    """The survivor published its portfolio up to t=9000; the dead worker's portfolio only to 3000:
    the dead one's outputs after 3000 must still go out."""
    heads = OutputHeads()
    heads.add("risk.snapshots", {"portfolio": "mine", "ts_ms": 9_000})
    heads.add("risk.snapshots", {"portfolio": "theirs", "ts_ms": 3_000})
    assert heads.already_published("risk.snapshots", {"portfolio": "theirs", "ts_ms": 2_000})
    assert not heads.already_published("risk.snapshots", {"portfolio": "theirs", "ts_ms": 5_000})
    assert not heads.already_published("risk.alerts", _alert("fp-new", 1, "e1"))
    assert heads.newest() == {"risk.snapshots": 9_000}


def test_audit_chains_go_by_sequence() -> None:
    heads = OutputHeads()
    chain = AuditChain("risk")
    for i in range(5):
        heads.add("risk.audit", chain.append("alert", {"i": i}, ts_ms=i))
    assert heads.already_published("risk.audit", {"stream": "risk", "seq": 4})
    assert not heads.already_published("risk.audit", {"stream": "risk", "seq": 5})
    assert not heads.already_published("risk.audit", {"stream": "notify", "seq": 0})
    assert not heads.empty

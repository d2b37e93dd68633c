"""Hash-chained audit records (``risk.audit``): tampering, deletion and reordering show.

Each record: ``stream``, ``seq`` (0, 1, 2, ... per stream), ``kind``, ``ts_ms``,
``payload``, ``prev_hash`` (the previous record's ``hash``; 64 zeros for seq 0) and
``hash`` = sha256 of the canonical JSON (orjson, sorted keys) of every other field.

>>> chain = AuditChain("alerts")
>>> a = chain.append("rules.loaded", {"rules": 12}, ts_ms=1)
>>> b = chain.append("alert", {"id": "x"}, ts_ms=2)
>>> verify([a, b])
(True, None, 'ok')
>>> verify([a, {**b, "payload": {"id": "y"}}])[:2]
(False, 1)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from agents.errors import MevRiskError

GENESIS_HASH = "0" * 64
_FIELDS = ("stream", "seq", "kind", "ts_ms", "payload", "prev_hash")


class AuditError(MevRiskError):
    """An audit record that cannot be chained (bad payload, bad restore point)."""


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace (orjson)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: record[k] for k in _FIELDS})).hexdigest()


class AuditChain:
    """Appends records to one stream's chain; restart with :meth:`restore`."""

    def __init__(self, stream: str, *, next_seq: int = 0, prev_hash: str = GENESIS_HASH):
        self.stream = stream
        self.next_seq = next_seq
        self.prev_hash = prev_hash

    @classmethod
    def restore(cls, stream: str, last: Mapping[str, Any] | None) -> AuditChain:
        """Continue after ``last`` (the newest record read back), or start a new chain."""
        if last is None:
            return cls(stream)
        if last.get("stream") != stream or record_hash(last) != last.get("hash"):
            raise AuditError(f"cannot continue stream {stream!r} from a record that does not "
                             "verify")
        return cls(stream, next_seq=int(last["seq"]) + 1, prev_hash=str(last["hash"]))

    def append(self, kind: str, payload: Mapping[str, Any], ts_ms: int) -> dict[str, Any]:
        rec: dict[str, Any] = {"stream": self.stream, "seq": self.next_seq, "kind": kind,
                               "ts_ms": int(ts_ms), "payload": dict(payload),
                               "prev_hash": self.prev_hash}
        try:
            # normalise through JSON so the stored record hashes the same when read back
            rec["payload"] = orjson.loads(canonical(rec["payload"]))
        except TypeError as e:
            raise AuditError(f"audit payload of {kind!r} is not JSON: {e}") from None
        rec["hash"] = record_hash(rec)
        self.next_seq += 1
        self.prev_hash = rec["hash"]
        return rec


def verify(records: Iterable[Mapping[str, Any]], *, expected_head: str | None = None,
           key: bytes | None = None) -> tuple[bool, int | None, str]:
    """Check a chain read from the start: ``(ok, first_bad_seq, reason)``.

    Detects edited records (hash mismatch), deleted or reordered records (seq gap,
    prev_hash mismatch). Deleting the newest records is detectable only against a
    known head: pass ``expected_head``, a record hash stored elsewhere earlier (an anchor); the
    chain must still hold it (it may have grown since). With ``key`` (see
    :func:`agents.audit.trust.audit_key`) every record's ``mac`` must verify too: a record
    appended by someone without the worker secret is a forgery even when it chains.

    >>> chain = AuditChain("risk")
    >>> a, b = chain.append("k", {}, 1), chain.append("k", {}, 2)
    >>> verify([a, b], expected_head=a["hash"]), verify([a], expected_head=b["hash"])[:2]
    ((True, None, 'ok'), (False, 1))
    """
    from agents.audit.trust import mac_ok

    prev_hash, expected_seq, stream = GENESIS_HASH, 0, None
    head_seen = expected_head is None
    for rec in records:
        seq = rec.get("seq")
        try:
            h = record_hash(rec)
        except (KeyError, TypeError) as e:
            return False, seq if isinstance(seq, int) else expected_seq, f"malformed: {e}"
        if stream is None:
            stream = rec["stream"]
        if rec["stream"] != stream:
            return False, seq, f"record of stream {rec['stream']!r} inside {stream!r}"
        if seq != expected_seq:
            return False, seq, f"seq {seq} where {expected_seq} was expected (missing or " \
                               "reordered records)"
        if rec["prev_hash"] != prev_hash:
            return False, seq, "prev_hash does not match the previous record's hash"
        if h != rec.get("hash"):
            return False, seq, "hash does not match the record's content (edited)"
        if key is not None and not mac_ok(rec, key):
            return False, seq, "mac missing or does not verify (forged, or not written with this secret)"
        head_seen = head_seen or h == expected_head
        prev_hash, expected_seq = h, expected_seq + 1
    if not head_seen:
        return False, expected_seq, "chain ends before the expected head (truncated)"
    return True, None, "ok"


def verify_chains(records: Iterable[Mapping[str, Any]], *, key: bytes | None = None,
                  expected_heads: Mapping[str, str] | None = None
                  ) -> dict[str, tuple[bool, int | None, str]]:
    """Verify every chain of an audit topic (records of several chains interleaved, each chain's
    in order): ``{stream: (ok, first_bad_seq, reason)}``, streams in name order. ``key``: check
    every record's ``mac``; ``expected_heads``: per stream, an anchor the chain must still hold
    (a stream named there but absent is reported as truncated).

    >>> a, b = AuditChain("risk"), AuditChain("notify")
    >>> records = [a.append("alert", {"id": 1}, 1), b.append("delivery", {"id": 2}, 2)]
    >>> verify_chains(records)
    {'notify': (True, None, 'ok'), 'risk': (True, None, 'ok')}
    >>> verify_chains(records, expected_heads={"gone": "ab" * 32})["gone"]
    (False, 0, 'chain ends before the expected head (truncated)')
    """
    by_stream: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_stream.setdefault(str(record.get("stream")), []).append(record)
    heads = dict(expected_heads or {})
    for stream in heads:
        by_stream.setdefault(stream, [])
    return {stream: verify(by_stream[stream], expected_head=heads.get(stream), key=key)
            for stream in sorted(by_stream)}

"""Authenticated audit records: an HMAC tag over each record, and the gate readers pass them through.

Anyone who can produce to the cluster can write ``risk.audit``, and the engine acts on what it
reads there: recovery re-applies operator actions (acknowledgements, resolutions, controls,
silences, rules reloads), every worker follows the silences, and the newest ``seq`` per chain
decides what a restarted worker does not publish again. So every record a worker writes carries
``mac`` = HMAC-SHA256 over the canonical JSON (sorted keys, as :func:`agents.audit.chain.canonical`)
of every other field, hex; the key is derived from the worker secret (``MEVRISK_CHECKPOINT_SECRET``)
by :func:`audit_key`, so the same secret never signs two kinds of things with one key.

:class:`AuditGate` decides which records a reader may act on, and counts the rest by reason:

* ``malformed``: not an audit record (fields missing or of the wrong type, bad hash);
* ``forged``: a ``mac`` that does not verify with this worker's key (or none, when a key is set);
* ``unsigned``: the reader has no key, so nothing can be authenticated (the engine then acts on
  no operator action read back from the topic);
* ``unlinked`` (without a key only): a record that does not continue its chain as read so far (its
  ``seq`` is not the next one, or its ``prev_hash`` is not the previous record's hash): what an
  unkeyed reader keeps for the output heads is only the chain it can link.

>>> key = audit_key(b"a-worker-secret-of-16+")
>>> from agents.audit.chain import AuditChain
>>> record = sign(AuditChain("risk").append("silence", {"action": "add"}, ts_ms=5), key)
>>> gate = AuditGate(key)
>>> gate.accept(record), gate.accept({**record, "seq": 10**12}), dict(gate.refused)
(True, False, {'malformed': 1})
>>> forged = {**record, "seq": 1}
>>> from agents.audit.chain import record_hash
>>> forged["hash"] = record_hash(forged)
>>> gate.accept(forged), gate.refused["forged"]
(False, 1)
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.audit.chain import _FIELDS, canonical, record_hash

MAC_FIELD = "mac"
_KEY_LABEL = b"mevrisk audit record mac v1"
REFUSAL_REASONS = ("malformed", "forged", "unsigned", "unlinked")


def audit_key(secret: bytes) -> bytes:
    """The audit MAC key derived from the worker secret (bytes, at least 16 of them)."""
    if len(secret) < 16:
        raise ValueError("the worker secret must be at least 16 bytes")
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def record_mac(record: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of the canonical record without its ``mac`` field."""
    body = canonical({k: v for k, v in record.items() if k != MAC_FIELD})
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(record: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``record`` with its ``mac``."""
    out = {k: v for k, v in record.items() if k != MAC_FIELD}
    out[MAC_FIELD] = record_mac(out, key)
    return out


def mac_ok(record: Mapping[str, Any], key: bytes) -> bool:
    """Whether ``record`` carries a ``mac`` that verifies with ``key`` (constant-time compare)."""
    tag = record.get(MAC_FIELD)
    if not isinstance(tag, str):
        return False
    try:
        expected = record_mac(record, key)
    except TypeError:  # a value canonical JSON cannot encode
        return False
    return hmac.compare_digest(tag, expected)


def well_formed(record: Any) -> bool:
    """An audit record's shape: every chained field, an integer ``seq`` >= 0, a matching ``hash``."""
    if not isinstance(record, Mapping) or any(k not in record for k in _FIELDS):
        return False
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return False
    if not isinstance(record["stream"], str) or not isinstance(record["payload"], Mapping):
        return False
    try:
        return record_hash(record) == record.get("hash")
    except TypeError:
        return False


@dataclass
class AuditGate:
    """Admits the audit records a reader may act on, in the order read; counts the others.

    With a key: well formed and a verifying ``mac``. Without one (``key=None``) and
    ``link_unsigned``: well formed and linked to the chain read so far (the first record of a
    stream anchors it), which is enough to find output heads a forged ``seq`` cannot inflate.
    Without a key and ``link_unsigned=False`` (a reader that *acts* on records: operator actions):
    every record is refused as ``unsigned``.
    """

    key: bytes | None
    link_unsigned: bool = True
    """Without a key: admit the records that link to their chain (True) or none (False)."""
    refused: Counter[str] = field(default_factory=Counter)
    _last: dict[str, tuple[int, str]] = field(default_factory=dict)

    def accept(self, record: Any) -> bool:
        if not well_formed(record):
            self.refused["malformed"] += 1
            return False
        if self.key is not None:
            if not mac_ok(record, self.key):
                self.refused["forged"] += 1
                return False
            return True
        if not self.link_unsigned:
            self.refused["unsigned"] += 1
            return False
        return self._linked(record)

    def _linked(self, record: Mapping[str, Any]) -> bool:
        stream, seq, prev = record["stream"], record["seq"], record["prev_hash"]
        last = self._last.get(stream)
        if last is not None and seq <= last[0]:
            return False  # already read (a duplicate or older): nothing new, not a refusal
        if last is not None and (seq != last[0] + 1 or prev != last[1]):
            self.refused["unlinked"] += 1
            return False
        self._last[stream] = (seq, str(record["hash"]))
        return True

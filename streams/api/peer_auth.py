"""Signed requests between workers (issue 12, item 5): a worker that passes a request on to a peer
never sends the caller's bearer token; it signs the request with the shared peer secret
(``MEVRISK_PEER_SECRET``) and names the original actor and role, and the peer verifies the
signature before it acts on the actor's behalf. Pure: no I/O, no aiohttp.

The tag is HMAC-SHA256 over, one per line: the version ``v1``, the method, the target worker's
base URL (so a request captured by one peer cannot be replayed to another), the path with its
query, the sha256 of the body, the timestamp (ms since the epoch, wall clock), the forwarder,
the actor's name and role. A request is accepted within ``window_ms`` of its timestamp and only
once (each tag is remembered until it leaves the window).

>>> signer = PeerSigner(b"0123456789abcdef-peer")
>>> headers = signer.sign("POST", "http://w2:6066", "/api/v1/alerts", b"{}", forwarded_by="http://w1:6066",
...                       actor="olga", role="operator", now_ms=1_000_000)
>>> signer.verify("POST", "http://w2:6066", "/api/v1/alerts", b"{}", headers, now_ms=1_000_500)
PeerClaim(forwarded_by='http://w1:6066', actor='olga', role='operator')
>>> signer.verify("POST", "http://w2:6066", "/api/v1/alerts", b"{}", headers, now_ms=1_000_600)
Traceback (most recent call last):
...
streams.api.peer_auth.PeerAuthError: this peer request was seen before (replayed)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agents.errors import MevRiskError

FORWARDED = "X-MevRisk-Forwarded-By"
"""The forwarding worker's base URL; honoured only on a request whose signature verifies."""
TIMESTAMP = "X-MevRisk-Peer-Timestamp"
ACTOR = "X-MevRisk-Actor"
ACTOR_ROLE = "X-MevRisk-Actor-Role"
SIGNATURE = "X-MevRisk-Peer-Signature"
PEER_HEADERS = (FORWARDED, TIMESTAMP, ACTOR, ACTOR_ROLE, SIGNATURE)
"""Any of these marks a request as coming from a peer: it must then carry a valid signature."""
MIN_SECRET_BYTES = 16
DEFAULT_WINDOW_MS = 30_000
MAX_REMEMBERED = 10_000


class PeerAuthError(MevRiskError):
    """A peer request whose signature is missing, wrong, stale or replayed."""


@dataclass(frozen=True)
class PeerClaim:
    """What a verified peer request says: who forwarded it, and for which actor and role."""

    forwarded_by: str
    actor: str
    role: str


def _message(method: str, target: str, path_qs: str, body: bytes, ts_ms: str, forwarded_by: str,
             actor: str, role: str) -> bytes:
    parts = ("v1", method.upper(), target.rstrip("/"), path_qs, hashlib.sha256(body).hexdigest(), ts_ms,
             forwarded_by, actor, role)
    if any("\n" in p for p in parts):
        raise PeerAuthError("a signed field contains a line break")
    return "\n".join(parts).encode()


class PeerSigner:
    """Signs and verifies peer requests with one shared secret (the same on every worker)."""

    def __init__(self, secret: bytes, window_ms: int = DEFAULT_WINDOW_MS,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the peer secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret, self.window_ms, self._clock_ms = secret, window_ms, clock_ms
        self._seen: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:  # never show the secret
        return f"PeerSigner(window_ms={self.window_ms})"

    def _tag(self, message: bytes) -> str:
        return "v1=" + hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, target: str, path_qs: str, body: bytes, *, forwarded_by: str, actor: str,
             role: str, now_ms: int | None = None) -> dict[str, str]:
        """The headers that let ``target`` (a peer's base URL) act on this request for ``actor``."""
        ts = str(self._clock_ms() if now_ms is None else now_ms)
        tag = self._tag(_message(method, target, path_qs, body, ts, forwarded_by, actor, role))
        return {FORWARDED: forwarded_by, TIMESTAMP: ts, ACTOR: actor, ACTOR_ROLE: role, SIGNATURE: tag}

    def verify(self, method: str, target: str, path_qs: str, body: bytes, headers: Mapping[str, str],
               now_ms: int | None = None) -> PeerClaim:
        """The claim of a request addressed to ``target`` (this worker's base URL); raises
        :class:`PeerAuthError` unless its tag verifies, it is recent and it was not seen before."""
        missing = [h for h in PEER_HEADERS if not headers.get(h)]
        if missing:
            raise PeerAuthError(f"peer request without {', '.join(missing)}")
        ts, tag = headers[TIMESTAMP], headers[SIGNATURE]
        if not ts.isdigit() or len(ts) > 16:
            raise PeerAuthError("peer timestamp must be an integer in ms")
        now = self._clock_ms() if now_ms is None else now_ms
        if abs(now - int(ts)) > self.window_ms:
            raise PeerAuthError(f"peer request outside the {self.window_ms} ms window "
                                "(clocks apart, or replayed)")
        claim = PeerClaim(headers[FORWARDED], headers[ACTOR], headers[ACTOR_ROLE])
        expected = self._tag(_message(method, target, path_qs, body, ts, claim.forwarded_by, claim.actor,
                                      claim.role))
        if not hmac.compare_digest(expected.encode(), tag.encode()):
            raise PeerAuthError("peer signature does not verify (another secret, or an altered request)")
        self._forget(now)
        if tag in self._seen:
            raise PeerAuthError("this peer request was seen before (replayed)")
        self._seen[tag] = int(ts)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return claim

    def _forget(self, now_ms: int) -> None:
        """Drop tags whose timestamp left the window (they are refused as stale anyway)."""
        for tag, ts in list(self._seen.items()):
            if now_ms - ts <= self.window_ms:
                break
            del self._seen[tag]

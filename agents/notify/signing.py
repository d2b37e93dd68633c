"""Webhook signatures: HMAC-SHA256 over ``timestamp.body``, the timestamp in its own header.

The sender puts the Unix time in seconds in ``X-MevRisk-Timestamp`` and
``sha256=`` + hex HMAC-SHA256(secret, ``f"{timestamp}.".encode() + body``) in
``X-MevRisk-Signature``. A receiver recomputes the HMAC over the header's
timestamp and the exact body bytes, compares in constant time, and refuses a
timestamp further than its replay window (default 300 s) from its own clock; it
keeps the ``Idempotency-Key`` values it has seen for that window, so a request
replayed inside the window is recognised as a duplicate. A retry is signed again
with a fresh timestamp (same body, same idempotency key).

>>> sig = sign(b'{"a":1}', "s3cret", 1_700_000_000)
>>> sig.startswith("sha256=")
True
>>> verify(b'{"a":1}', "s3cret", sig, "1700000000", now_secs=1_700_000_100)
True
>>> verify(b'{"a":2}', "s3cret", sig, "1700000000", now_secs=1_700_000_100)
False
>>> verify(b'{"a":1}', "s3cret", sig, "1700000000", now_secs=1_700_000_301)  # replayed too late
False
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-MevRisk-Signature"
TIMESTAMP_HEADER = "X-MevRisk-Timestamp"
REPLAY_WINDOW_SECS = 300


def signed_bytes(body: bytes, timestamp: int | str) -> bytes:
    """What the HMAC covers: the decimal timestamp, a dot, then the exact body bytes."""
    return f"{timestamp}.".encode("ascii") + body


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """``X-MevRisk-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), signed_bytes(body, timestamp), hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_headers(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """Both headers a signed webhook request carries."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(body, secret, timestamp)}


def verify(
    body: bytes,
    secret: str,
    signature: str,
    timestamp: str,
    *,
    now_secs: float,
    window_secs: float = REPLAY_WINDOW_SECS,
) -> bool:
    """A receiver's check: the timestamp is an integer within ``window_secs`` of ``now_secs``
    (either side, for clock skew) and the signature matches, compared in constant time."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now_secs - int(timestamp)) > window_secs:
        return False
    return hmac.compare_digest(sign(body, secret, int(timestamp)), signature)

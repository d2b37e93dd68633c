"""Signed, short-lived links to a report, so a browser can follow a plain ``<a href>`` to it.

The dashboard sends its bearer token in a header, never in a URL; a link a browser follows
carries no header. So the dashboard asks ``GET /api/v1/reports/daily/link`` (viewer role) for a
URL whose query is signed (HMAC-SHA256) for the caller's actor name, valid ``ttl_secs`` of wall
time and for exactly that path and query: the link grants the viewer role on that one report,
nothing else, and leaks no token. The key is derived from ``MEVRISK_PEER_SECRET`` when set (a
link works on every worker of the group), else random per process.

>>> links = LinkSigner(b"k" * 32, ttl_secs=60, clock=lambda: 1000.0)
>>> url = links.sign("/r", {"date": "2026-01-01"}, "ada")
>>> url.startswith("/r?date=2026-01-01&actor=ada&expires=1060&sig=")
True
>>> from urllib.parse import urlsplit, parse_qsl
>>> links.verify("/r", dict(parse_qsl(urlsplit(url).query))).name
'ada'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from streams.api.auth import Principal, Role
from streams.api.common import ApiError

SIGNED = ("actor", "expires", "sig")
"""Query parameters the signature adds to a link."""


class LinkSigner:
    """Signs and checks report links (wall-clock expiry: an access rule, not event time)."""

    def __init__(self, key: bytes, ttl_secs: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self._key, self.ttl_secs, self._clock = key, ttl_secs, clock

    @classmethod
    def from_secret(cls, peer_secret: str, ttl_secs: float = 300.0) -> LinkSigner:
        """Keyed by ``MEVRISK_PEER_SECRET`` (domain-separated) when set, else a random key."""
        if peer_secret:
            key = hmac.new(peer_secret.encode(), b"mevrisk report links v1", hashlib.sha256).digest()
        else:
            key = secrets.token_bytes(32)
        return cls(key, ttl_secs)

    def _mac(self, path: str, params: Mapping[str, str]) -> str:
        canonical = path + "?" + urlencode(sorted((k, v) for k, v in params.items() if k != "sig"))
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, params: Mapping[str, str], actor: str) -> str:
        """``path?params&actor=..&expires=..&sig=..``; ``expires`` in Unix seconds."""
        query = {k: v for k, v in params.items() if k not in SIGNED}
        query.update(actor=actor, expires=str(int(self._clock() + self.ttl_secs)))
        query["sig"] = self._mac(path, query)
        return path + "?" + urlencode(query)

    def verify(self, path: str, query: Mapping[str, str]) -> Principal:
        """The viewer the link was signed for; ``ApiError(401)`` if forged, altered or expired."""
        names = [k for k, _ in query.items()]  # a MultiDict's items list a repeated parameter twice
        if len(names) != len(set(names)):
            raise ApiError(401, "report link repeats a query parameter")
        given = query.get("sig", "")
        if not hmac.compare_digest(given.encode(), self._mac(path, query).encode()):
            raise ApiError(401, "report link signature does not verify (altered, or signed by "
                                "another worker); ask the dashboard for a new link")
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise ApiError(401, "report link has no valid expiry") from None
        if self._clock() > expires:
            raise ApiError(401, "report link expired; ask the dashboard for a new link")
        actor = query.get("actor", "")
        if not actor or len(actor) > 200:
            raise ApiError(401, "report link names no actor")
        return Principal(actor, Role.VIEWER)

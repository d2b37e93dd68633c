"""Bearer-token authentication, roles and per-caller rate limiting (pure: no Faust, no I/O).

>>> store = TokenStore.from_mapping({"s3cret-op": {"role": "operator", "name": "alice"}})
>>> store.identify("s3cret-op").name, store.identify("s3cret-op").role.name
('alice', 'OPERATOR')
>>> store.identify("wrong") is None
True
>>> Role.ADMIN.allows(Role.OPERATOR), Role.VIEWER.allows(Role.OPERATOR)
(True, False)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.errors import MevRiskError


class ApiConfigError(MevRiskError):
    """The API's token configuration is unusable (the worker refuses to start)."""


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    def allows(self, needed: Role) -> bool:
        return self >= needed

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ApiConfigError(f"unknown API role {value!r}: viewer, operator or admin") from None


@dataclass(frozen=True)
class Principal:
    """Who is calling: an actor name for the audit trail (never the token) and a role."""

    name: str
    role: Role
    anonymous: bool = False
    peer: str | None = None
    """The forwarding worker's base URL when a peer signed this request for ``name`` (item 5)."""


ANONYMOUS = Principal("anonymous", Role.VIEWER, anonymous=True)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """Known tokens, kept as sha256 digests and compared with :func:`hmac.compare_digest`.

    Every lookup compares against every stored digest, so the time taken does not tell
    which (or whether a) token matched.
    """

    def __init__(self, entries: list[tuple[bytes, Principal]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never show tokens
        return f"TokenStore({len(self._entries)} tokens)"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> TokenStore:
        entries: list[tuple[bytes, Principal]] = []
        for i, (token, spec) in enumerate(mapping.items()):
            if not isinstance(token, str) or len(token) < 8:
                raise ApiConfigError(f"API token #{i + 1}: tokens must be strings of 8+ characters")
            if isinstance(spec, str):
                role, name = Role.parse(spec), None
            elif isinstance(spec, Mapping) and isinstance(spec.get("role"), str):
                role, name = Role.parse(spec["role"]), spec.get("name")
            else:
                raise ApiConfigError(f"API token #{i + 1}: expected a role or {{role, name}}")
            actor = str(name) if name else f"token-{hashlib.sha256(token.encode()).hexdigest()[:8]}"
            entries.append((_digest(token), Principal(actor, role)))
        return cls(entries)

    def identify(self, token: str) -> Principal | None:
        probe = _digest(token)
        found: Principal | None = None
        for digest, principal in self._entries:
            if hmac.compare_digest(probe, digest) and found is None:
                found = principal
        return found


def load_token_mapping(raw_json: str, path: Path | None) -> dict[str, Any]:
    """Merge the JSON from the environment and the tokens file (file entries last)."""
    mapping: dict[str, Any] = {}
    if raw_json.strip():
        try:
            data = json.loads(raw_json)
        except json.JSONDecodeError as e:
            raise ApiConfigError(f"MEVRISK_API_TOKENS is not valid JSON (line {e.lineno})") from None
        if not isinstance(data, dict):
            raise ApiConfigError("MEVRISK_API_TOKENS must be a JSON object {token: role}")
        mapping.update(data)
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ApiConfigError(f"cannot read API tokens file {path}: {type(e).__name__}") from None
        if isinstance(data, dict) and isinstance(data.get("tokens"), dict):
            data = data["tokens"]
        if not isinstance(data, dict):
            raise ApiConfigError(f"API tokens file {path}: expected a mapping token -> role")
        mapping.update(data)
    return mapping


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second up to ``burst``.

    >>> clock = iter([0.0, 0.0, 0.0, 1.0]).__next__
    >>> b = TokenBucket(rate=1.0, burst=2, clock=clock)
    >>> b.take(), b.take(), b.take(), b.take()
    (True, True, False, True)
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._level = float(burst)
        self._last: float | None = None

    def take(self) -> bool:
        now = self._clock()
        if self._last is not None:
            self._level = min(self.burst, self._level + (now - self._last) * self.rate)
        self._last = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True
        return False

    def retry_after_secs(self) -> float:
        return max(0.0, (1.0 - self._level) / self.rate) if self.rate > 0 else 60.0


class RateLimiter:
    """One bucket per caller key; the table is bounded (oldest keys are forgotten)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str) -> tuple[bool, float]:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = bucket  # re-insert: most recently used last
        ok = bucket.take()
        return ok, 0.0 if ok else bucket.retry_after_secs()

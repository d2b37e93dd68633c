"""Label matchers, silences and inhibition rules (Alertmanager semantics).

A matcher can be written three ways:

* Alertmanager's string form: ``severity="critical"``, ``severity=~"warning|high"``,
  ``portfolio!="p1"``, ``alertname!~"Stale.*"`` (regexes are fully anchored);
* Alertmanager's API form: ``{"name": ..., "value": ..., "isRegex": ..., "isEqual": ...}``;
* a plain mapping ``{label: value}`` (a list value means "any of").

Regexes run on RE2 (``google-re2``), as in Alertmanager: matching is linear in the label's
length, whatever the pattern (no backtracking: ``(\\w|\\w|\\w)*!`` is as cheap as ``a``), and
patterns RE2 does not support (backreferences, lookaround) are refused. Silences and matchers are
bounded: a matcher value is at most :data:`MAX_MATCHER_CHARS` characters, a silence has at most
:data:`MAX_MATCHERS` matchers, and an alert engine holds at most
``agents.alerts.engine.MAX_SILENCES`` silences (a refused one raises ``ValueError`` here,
``AlertsError`` from the engine; the API answers 400 with the reason).

>>> ms = parse_matchers(['severity=~"warning|high"', {"portfolio": "p1"}])
>>> matches_all(ms, {"severity": "high", "portfolio": "p1"})
True
>>> matches_all(ms, {"severity": "critical", "portfolio": "p1"})
False
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

MAX_MATCHER_CHARS = 1024
"""Longest matcher value (label value or regex), in characters."""
MAX_MATCHERS = 32
"""Most matchers one silence (or one side of an inhibit rule) may have."""
MAX_NAME_CHARS = 128
"""Longest label name in a matcher."""
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is a ValueError, not a line on stderr
_RE2_OPTIONS.max_mem = 1 << 20  # 1 MiB per compiled program: a pattern that needs more is refused

_STRING_FORM = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))\s*$')


@dataclass(frozen=True)
class Matcher:
    """One label matcher; ``op`` is ``=``, ``!=``, ``=~`` or ``!~``."""

    name: str
    value: str
    op: str = "="
    _rx: Any = field(default=None, compare=False, repr=False)
    """The compiled RE2 program of a regex matcher (fully anchored: ``fullmatch``)."""

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"bad matcher operator {self.op!r}")
        if not isinstance(self.name, str) or not isinstance(self.value, str):
            raise ValueError("a matcher's name and value are strings")
        if len(self.name) > MAX_NAME_CHARS:
            raise ValueError(f"matcher label name of {len(self.name)} characters (at most {MAX_NAME_CHARS})")
        if len(self.value) > MAX_MATCHER_CHARS:
            raise ValueError(f"matcher value of {len(self.value)} characters for {self.name!r} "
                             f"(at most {MAX_MATCHER_CHARS})")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_rx", re2.compile(self.value, _RE2_OPTIONS))
            except re2.error as e:
                reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else e
                raise ValueError(f"bad matcher regex {self.value[:100]!r}: {reason} "
                                 "(RE2 syntax: no backreferences or lookaround)") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self._rx is not None and self._rx.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value,
                "isRegex": self.op in ("=~", "!~"), "isEqual": self.op in ("=", "=~")}

    def __reduce__(self) -> tuple[Any, ...]:  # the compiled regex is rebuilt on unpickle
        return (Matcher, (self.name, self.value, self.op))


def _from_api(d: Mapping[str, Any]) -> Matcher:
    regex, equal = bool(d.get("isRegex", False)), bool(d.get("isEqual", True))
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    return Matcher(str(d["name"]), str(d["value"]), op[(regex, equal)])


def parse_matchers(spec: Any) -> tuple[Matcher, ...]:
    """Parse matchers from any of the accepted forms; raises ``ValueError`` (also for more than
    :data:`MAX_MATCHERS` of them).

    >>> parse_matchers({"alertname": "x" * (MAX_MATCHER_CHARS + 1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: matcher value of 1025 characters for 'alertname' (at most 1024)
    """
    out = _parse(spec, 0)
    if len(out) > MAX_MATCHERS:
        raise ValueError(f"{len(out)} matchers (at most {MAX_MATCHERS})")
    return out


def _parse(spec: Any, depth: int) -> tuple[Matcher, ...]:
    if depth > 2:
        raise ValueError("matchers nest at most one list deep")
    if spec is None:
        return ()
    if isinstance(spec, Mapping) and "name" in spec and "value" in spec:
        return (_from_api(spec),)
    if isinstance(spec, Mapping):
        if len(spec) > MAX_MATCHERS:
            raise ValueError(f"{len(spec)} matchers (at most {MAX_MATCHERS})")
        out = []
        for k, v in spec.items():
            if isinstance(v, list | tuple):
                out.append(Matcher(str(k), "|".join(re2.escape(str(x)) for x in v), "=~"))
            else:
                out.append(Matcher(str(k), str(v), "="))
        return tuple(out)
    if isinstance(spec, str):
        if len(spec) > MAX_MATCHER_CHARS + MAX_NAME_CHARS + 8:
            raise ValueError(f"matcher of {len(spec)} characters (at most {MAX_MATCHER_CHARS} in its value)")
        m = _STRING_FORM.match(spec)
        if not m:
            raise ValueError(f"bad matcher {spec!r}: expected e.g. severity=\"critical\"")
        value = m.group(3) if m.group(3) is not None else m.group(4)
        return (Matcher(m.group(1), value.replace('\\"', '"'), m.group(2)),)
    if isinstance(spec, list | tuple):
        if len(spec) > MAX_MATCHERS:
            raise ValueError(f"{len(spec)} matchers (at most {MAX_MATCHERS})")
        return tuple(x for item in spec for x in _parse(item, depth + 1))
    raise ValueError(f"bad matchers {spec!r}")


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class Silence:
    """Suppresses notifications of matching alerts between ``starts_ms`` and ``ends_ms``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    author: str
    comment: str

    def active_at(self, ts_ms: int) -> bool:
        return self.starts_ms <= ts_ms < self.ends_ms

    def matches(self, labels: Mapping[str, str], ts_ms: int) -> bool:
        return self.active_at(ts_ms) and matches_all(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [m.to_dict() for m in self.matchers],
                "starts_ms": self.starts_ms, "ends_ms": self.ends_ms,
                "author": self.author, "comment": self.comment}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        return cls(d["id"], parse_matchers(d["matchers"]), int(d["starts_ms"]),
                   int(d["ends_ms"]), d["author"], d["comment"])


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert matching ``source`` mutes alerts matching ``target`` with equal labels."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    def inhibits(self, source_labels: Mapping[str, str], target_labels: Mapping[str, str]) -> bool:
        return (matches_all(self.target, target_labels)
                and matches_all(self.source, source_labels)
                and all(source_labels.get(k, "") == target_labels.get(k, "") for k in self.equal))

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> InhibitRule:
        src = d.get("source_matchers", d.get("source_match"))
        tgt = d.get("target_matchers", d.get("target_match"))
        if not src or not tgt:
            raise ValueError("an inhibit rule needs source_matchers and target_matchers")
        equal = d.get("equal", [])
        if not isinstance(equal, list):
            raise ValueError("inhibit rule 'equal' must be a list of label names")
        return cls(parse_matchers(src), parse_matchers(tgt), tuple(str(x) for x in equal))

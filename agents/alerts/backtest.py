"""Offline rule back-testing: run a rule set over recorded contexts, no Kafka.

Input: an iterable of ``(kind, ts_ms, record)`` in event-time order, where ``kind`` is a
scope (``portfolio`` - alias ``snapshot`` -, ``strategy``, ``source``, ``asset``,
``global``) or ``tick`` (advance the watermark only). The entity id comes from the
record: ``portfolio``, ``strategy``, ``name``/``source``, ``asset``; ``global`` uses
``"global"``. Output: the alert events as dicts, in emission order, exactly as the
engine emits them in the worker (ids included).

>>> from agents.alerts.rules import parse_rules
>>> rs = parse_rules([{"name": "Stale", "scope": "source", "severity": "high",
...                    "expr": "source.age_ms > source.limit_ms"}])
>>> out = run_rules([("source", 10, {"name": "gas", "age_ms": 9, "limit_ms": 5})], rs)
>>> [(e["rule"], e["transition"], e["ts_ms"]) for e in out]
[('Stale', 'firing', 10)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.alerts.engine import AlertEngine
from agents.alerts.errors import AlertsError
from agents.alerts.rules import RuleSet, load_rules

ENTITY_FIELD = {"portfolio": ("portfolio",), "strategy": ("strategy",),
                "source": ("name", "source"), "asset": ("asset",)}


def entity_of(scope: str, record: Mapping[str, Any]) -> str:
    if scope == "global":
        return "global"
    for f in ENTITY_FIELD[scope]:
        if record.get(f) is not None:
            return str(record[f])
    raise AlertsError(f"{scope} record without {' or '.join(ENTITY_FIELD[scope])}: {record!r}")


def run_rules(events: Iterable[tuple[str, int, Mapping[str, Any]]],
              ruleset: RuleSet | None = None, *, until_ms: int | None = None,
              engine: AlertEngine | None = None) -> list[dict[str, Any]]:
    """Evaluate ``ruleset`` (default: the shipped rules) over ``events``; see module doc.

    ``until_ms`` runs a final tick (to flush pending ``for`` / ``keep_firing_for`` timers);
    pass ``engine`` to continue from existing state."""
    eng = engine or AlertEngine(ruleset if ruleset is not None else load_rules())
    out: list[dict[str, Any]] = []
    watermark: int | None = None
    for kind, ts_ms, record in events:
        scope = "portfolio" if kind == "snapshot" else kind
        if watermark is None or ts_ms > watermark:
            watermark = ts_ms
            out.extend(e.to_dict() for e in eng.tick(watermark))
        if scope == "tick":
            continue
        if scope not in ENTITY_FIELD and scope != "global":
            raise AlertsError(f"unknown event kind {kind!r}")
        out.extend(e.to_dict() for e in eng.evaluate(scope, entity_of(scope, record), record,
                                                     ts_ms))
    if until_ms is not None and (watermark is None or until_ms > watermark):
        out.extend(e.to_dict() for e in eng.tick(until_ms))
    return out

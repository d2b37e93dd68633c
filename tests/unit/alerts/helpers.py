"""Small builders shared by the alerting tests."""

from __future__ import annotations

from typing import Any

from agents.alerts.engine import AlertEngine
from agents.alerts.rules import RuleSet, parse_rules

S = 1_000
M = 60_000
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def rule(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "BigVaR", "scope": "portfolio",
                            "expr": "snapshot.var_95_usd > 10000.0", "severity": "high",
                            "annotations": {"summary": "VaR {{ var_95_usd }}"}}
    base.update(kw)
    return base


def ruleset(*rules: dict[str, Any], inhibit: list[dict[str, Any]] | None = None) -> RuleSet:
    return parse_rules({"rules": list(rules), "inhibit_rules": inhibit or []})


def engine(*rules: dict[str, Any], **kw: Any) -> AlertEngine:
    return AlertEngine(ruleset(*(rules or (rule(),)), **kw))


def snap(var: float, **kw: Any) -> dict[str, Any]:
    return {"portfolio": "p1", "var_95_usd": var, "total_exposure_usd": 100_000.0,
            "rating": "LOW", **kw}


def seq(events: Any) -> list[tuple[str, int, str]]:
    """(transition, ts offset from T0, severity) for compact exact assertions."""
    return [(e.transition, e.ts_ms - T0, e.severity) for e in events]

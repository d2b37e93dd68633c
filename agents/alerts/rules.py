"""Alert rules: load, validate and compile ``deploy/config/rules.yaml``.

Rule format (YAML, one list under ``rules:``; see the shipped file for examples)::

    - name: VaRAbove10PctOfExposure      # unique, required
      scope: portfolio                   # portfolio | strategy | source | asset | global
      expr: snapshot.var_to_exposure > 0.10   # CEL, must return a bool
      for: 1m                            # pending time before firing (default 0)
      keep_firing_for: 2m                # keep firing after the expr turns false (default 0)
      severity: high                     # info | warning | high | critical
      labels: {team: risk}               # static labels (part of the fingerprint)
      annotations:                       # templated: {{ field }} / {{ field | pct }}
        summary: "VaR 95 {{ var_95_usd | usd }} is {{ var_to_exposure | pct }} of exposure"
      cooldown: 60m                      # min time between repeat notifications (0 = none)
      channels: [email, slack]
      escalate:                          # steps while unacknowledged, after firing started
        - {after: 30m, severity: critical, channels: [sms]}
      action: {type: HALT, scope: portfolio}   # optional kill-switch (HALT | REDUCE)

Seed aliases are accepted: ``condition`` for ``expr``, ``cooldown_minutes`` (a number)
for ``cooldown``, ``message`` for ``annotations.summary``, seed severities
``LOW``/``MEDIUM``/``HIGH``/``CRITICAL`` (mapped to info/warning/high/critical) and, in
escalation steps, ``after_minutes``, ``new_severity`` and ``escalate_to`` (the recipients, as in
the seed: channel names added to the step's ``channels``, so they are routed; a step without a
severity keeps the alert's).

Durations are strings with a unit (``500ms``, ``30s``, ``5m``, ``1h30m``, ``1d``); a bare
number other than 0 is rejected. ``inhibit_rules:`` (Alertmanager shape:
``source_matchers``, ``target_matchers``, ``equal``) may sit next to ``rules:``. A rule
with ``enabled: false`` is skipped.

Errors: :func:`load_rules` / :func:`parse_rules` raise :class:`RuleError` listing every
problem, one per line, each as ``FILE: rule 'NAME': WHAT`` (``rule #N`` when the name is
missing); :func:`check_file` returns the same lines as a list. Nothing is half-loaded: a
caller hot-reloading keeps its current :class:`RuleSet` when loading raises, and hands a
good one to ``AlertEngine.reload``, which keeps the state of unchanged rules.

Evaluation context (the CEL variables), by scope:

* ``portfolio``: ``snapshot`` - the risk snapshot: ``total_exposure_usd``,
  ``var_95_usd``, ``var_99_usd``, ``es_95_usd``, ``es_99_usd``, ``var_to_exposure``,
  ``max_concentration``, ``hhi``, ``correlation_risk``, ``rating``
  (``"LOW" | "MEDIUM" | "HIGH" | "CRITICAL"``), ``backtest`` {``zone``
  (green/yellow/red), ``exceptions``, ...}, ``anomaly`` {``portfolio_score``, ...}
  (may be absent: guard with ``has(snapshot.anomaly)``).
* ``strategy``: ``strategy`` - strategy health: ``inclusion_rate``, ``revert_rate``,
  ``gas_to_gross``, ``net_pnl_usd``, ``drawdown_usd``, ``win_rate``,
  ``bundles_submitted``, ``portfolio``.
* ``source``: ``source`` - feed health: ``name``, ``last_ts_ms``, ``age_ms``,
  ``limit_ms``, ``status``.
* ``asset``: ``asset`` - market figures of one asset (:mod:`agents.marketwatch`):
  ``price_usd``, ``pegged``, ``peg_usd``, ``depeg_pct``, ``jump_pct``, ``drop_pct``,
  ``rise_pct``, ``depth_usd``, ``depth_ratio``, ``spread_bps``, ``anomaly_score``,
  ``anomaly_flags``, ``age_ms``; the alert's ``asset`` label names the asset.
* ``global``: ``system`` - market-wide figures, evaluated once per step for the entity
  ``market`` (:mod:`agents.marketwatch`): ``jump_pct_max``, ``depth_ratio_min``,
  ``gas_gwei_max``, ``gas_ratio_max``, ``gas_jump_max`` (and the ``*_asset``/``*_chain`` that
  holds each), ``dlq_recent``, ``volatility``,
  ``correlation``, ``liquidity_ratio``, ``flags{...}``, ``flag_count``.
* ``strategy`` contexts also carry ``recent`` {``revert_rate``, ``revert_z``,
  ``bundles_reverted``, ...}: the last few seconds against the strategy's baseline.

Every scope also has ``entity_id`` (string) and ``ts_ms`` (the event time). Every number
in the context reaches CEL as a double, so write arithmetic literals with a decimal
point (``0.1 * snapshot.total_exposure_usd``); comparisons such as ``x > 20`` work
either way. An expression that fails at run time (a missing field, a null) counts as
not firing; the error is counted per rule, never raised.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cel
import yaml

from agents.alerts.errors import RuleError
from agents.alerts.fastpath import compile_fast
from agents.alerts.matchers import InhibitRule
from agents.alerts.template import template_problems
from agents.alerts.timeutil import parse_duration

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "deploy" / "config" / "rules.yaml"

SEVERITIES = ("info", "warning", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
SEED_SEVERITY = {"LOW": "info", "MEDIUM": "warning", "HIGH": "high", "CRITICAL": "critical"}
SCOPE_VARIABLE = {"portfolio": "snapshot", "strategy": "strategy", "source": "source",
                  "asset": "asset", "global": "system"}
ACTION_TYPES = ("HALT", "REDUCE")
ACTION_SCOPES = ("strategy", "portfolio", "global")
HEADLINE = {
    "portfolio": ("total_exposure_usd", "var_95_usd", "var_99_usd", "max_concentration",
                  "rating"),
    "strategy": ("inclusion_rate", "revert_rate", "gas_to_gross", "net_pnl_usd",
                 "drawdown_usd"),
    "source": ("name", "age_ms", "limit_ms", "status"),
    "asset": ("price_usd",),
    "global": (),
}
"""Context fields every alert event of the scope carries in ``values``."""

SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "portfolio": {
        "portfolio": "p1", "total_exposure_usd": 100_000.0, "var_95_usd": 5_000.0,
        "var_99_usd": 8_000.0, "es_95_usd": 6_500.0, "es_99_usd": 9_500.0,
        "var_to_exposure": 0.05, "max_concentration": 0.3, "hhi": 0.2,
        "correlation_risk": 0.4, "rating": "LOW", "active_positions": 4.0,
        "backtest": {"zone": "green", "exceptions": 1.0, "observations": 250.0},
        "anomaly": {"portfolio_score": 0.1, "is_anomaly": False},
    },
    "strategy": {
        "strategy": "s1", "portfolio": "p1", "inclusion_rate": 0.4, "revert_rate": 0.05,
        "gas_to_gross": 0.3, "net_pnl_usd": 1_000.0, "gross_pnl_usd": 1_500.0,
        "gas_spent_usd": 450.0, "drawdown_usd": 200.0, "win_rate": 0.6,
        "bundles_submitted": 100.0, "bundles_included": 40.0, "bundles_reverted": 5.0,
    },
    "source": {"name": "price-oracle", "last_ts_ms": 1_000.0, "age_ms": 500.0,
               "limit_ms": 30_000.0, "status": "ACTIVE", "errors": 0.0},
    "asset": {"asset": "ETH", "price_usd": 3_000.0, "volatility": 0.02,
              "depth_usd": 1e6, "spread_bps": 5.0, "gas_price_gwei": 20.0, "pegged": False,
              "peg_usd": 0.0, "depeg_pct": 0.0, "jump_pct": 0.001, "drop_pct": 0.001,
              "rise_pct": 0.0, "depth_baseline_usd": 1e6, "depth_ratio": 1.0,
              "anomaly_score": 0.1, "anomaly_flags": 0.0, "age_ms": 100.0},
    "global": {"assets": 8.0, "jump_pct_max": 0.001, "jump_asset": "ETH", "depeg_pct_max": 0.0,
               "depeg_asset": "USDC", "depth_ratio_min": 1.0, "depth_asset": "ETH",
               "anomaly_flags_max": 0.0, "anomaly_asset": "ETH", "gas_gwei_max": 20.0,
               "gas_gwei_chain": "ethereum", "gas_ratio_max": 1.0, "gas_ratio_chain": "ethereum",
               "gas_jump_max": 1.0, "gas_jump_chain": "ethereum",
               "gas": {"ethereum": {"gwei": 20.0, "baseline_gwei": 20.0, "ratio": 1.0, "jump": 1.0}},
               "dlq_recent": 0.0, "dlq_window_ms": 10_000.0,
               "dlq_total": 0.0, "volatility": 0.02, "correlation": 0.5, "liquidity_ratio": 1.0,
               "flags": {"high_volatility": False, "high_correlation": False, "low_liquidity": False,
                         "high_gas": False}, "flag_count": 0.0},
}
"""Representative contexts: every rule is trial-evaluated on its scope's sample at load,
which catches unknown functions, type errors (``float * int``) and non-bool results."""

_KNOWN_KEYS = {"name", "scope", "expr", "condition", "for", "keep_firing_for", "severity",
               "labels", "annotations", "cooldown", "cooldown_minutes", "escalate",
               "channels", "action", "message", "description", "enabled"}
_STRING_LITERAL = re.compile(r"'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"",
                             re.S)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class EscalationStep:
    after_ms: int
    severity: str | None
    """The alert's severity from this step on; None: unchanged (a step that only adds recipients)."""
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    """A kill-switch order a firing alert gives: HALT or REDUCE a strategy/portfolio/global."""

    type: str
    scope: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "scope": self.scope, **dict(self.params)}


@dataclass(frozen=True, eq=False)
class Rule:
    """One compiled rule. Equality of definitions is ``definition_hash``."""

    name: str
    scope: str
    expr: str
    for_ms: int
    keep_firing_for_ms: int
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    cooldown_ms: int
    escalate: tuple[EscalationStep, ...]
    channels: tuple[str, ...]
    action: Action | None
    definition_hash: str
    program: Any = field(repr=False)
    paths: tuple[tuple[str, ...], ...] = ()
    variables: frozenset[str] = frozenset()
    fast: Any = field(default=None, repr=False)
    """Pure-Python evaluator of the expr (see :mod:`agents.alerts.fastpath`) or None."""

    @property
    def variable(self) -> str:
        return SCOPE_VARIABLE[self.scope]


@dataclass(frozen=True)
class ScopePlan:
    """How to build the CEL activation for one scope, shared by all its rules."""

    scope: str
    rules: tuple[Rule, ...]
    tree: Any  # prune tree: dict of key -> subtree, True = copy whole value, None = all
    need_entity: bool
    need_ts: bool

    def activation(self, context: Mapping[str, Any], entity_id: str,
                   ts_ms: int) -> dict[str, Any]:
        """The CEL variables: only the fields some rule reads, numbers as doubles."""
        act: dict[str, Any] = {SCOPE_VARIABLE[self.scope]: _prune(context, self.tree)}
        if self.need_entity:
            act["entity_id"] = entity_id
        if self.need_ts:
            act["ts_ms"] = float(ts_ms)
        return act


def _num(v: Any) -> Any:
    if type(v) is int:
        return float(v)
    if isinstance(v, Mapping):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_num(x) for x in v]
    return v


def _prune(src: Mapping[str, Any], tree: Any) -> Any:
    if tree is None or tree is True or not isinstance(src, Mapping):
        return _num(src)
    out = {}
    for k, sub in tree.items():
        if k in src:
            v = src[k]
            if type(v) is int:
                out[k] = float(v)
            elif sub is True or type(v) in (float, str, bool):
                out[k] = _num(v)
            else:
                out[k] = _prune(v, sub)
    return out


def extract_paths(expr: str, variable: str) -> tuple[tuple[str, ...], ...] | None:
    """Field paths under ``variable`` that ``expr`` reads; ``None`` if it reads it whole.

    >>> extract_paths("has(snapshot.anomaly) && snapshot.anomaly.score > 0.9", "snapshot")
    (('anomaly',), ('anomaly', 'score'))
    >>> extract_paths("snapshot.tags.exists(t, t == 'x')", "snapshot")
    (('tags',),)
    >>> extract_paths("size(snapshot) > 0", "snapshot") is None
    True
    """
    text = _STRING_LITERAL.sub('""', expr)
    paths: list[tuple[str, ...]] = []
    for m in _IDENT.finditer(text):
        if m.group(0) != variable:
            continue
        before = text[:m.start()].rstrip()
        if before.endswith("."):
            continue  # a field that happens to be named like the variable
        segs: list[str] = []
        pos = m.end()
        while True:
            nm = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)").match(text, pos)
            if not nm:
                break
            segs.append(nm.group(1))
            pos = nm.end()
        rest = text[pos:].lstrip()
        if rest.startswith("(") and segs:
            segs.pop()  # a method call on the preceding path
        if not segs:
            return None
        paths.append(tuple(segs))
    return tuple(sorted(set(paths)))


def _merge_tree(paths_list: list[tuple[tuple[str, ...], ...] | None]) -> Any:
    tree: dict[str, Any] = {}
    for paths in paths_list:
        if paths is None:
            return None
        for p in paths:
            node: Any = tree
            for i, seg in enumerate(p):
                last = i == len(p) - 1
                cur = node.get(seg)
                if cur is True:
                    break
                if last:
                    node[seg] = True
                else:
                    if cur is None:
                        cur = node[seg] = {}
                    node = cur
    return tree


def get_path(ctx: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    v: Any = ctx
    for seg in path:
        if not isinstance(v, Mapping) or seg not in v:
            return None
        v = v[seg]
    return v


# ---------------------------------------------------------------------------- parsing


def _duration(raw: Mapping[str, Any], key: str, where: str) -> int:
    try:
        ms = parse_duration(raw.get(key, 0) or 0)
    except ValueError as e:
        raise RuleError(f"{where}: '{key}': {e}") from None
    if ms < 0:
        raise RuleError(f"{where}: '{key}' must not be negative")
    return ms


def _severity(value: Any, where: str, key: str = "severity") -> str:
    if not isinstance(value, str):
        raise RuleError(f"{where}: '{key}' missing or not a string "
                        f"(one of {', '.join(SEVERITIES)})")
    s = SEED_SEVERITY.get(value.upper(), value.lower())
    if s not in SEVERITY_RANK:
        raise RuleError(f"{where}: unknown severity {value!r} (one of {', '.join(SEVERITIES)}"
                        f" or seed names {', '.join(SEED_SEVERITY)})")
    return s


def _str_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RuleError(f"{where}: '{key}' must be a list of strings")
    return tuple(value)


def _str_map(value: Any, where: str, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RuleError(f"{where}: '{key}' must be a mapping")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not _LABEL_NAME.match(k):
            raise RuleError(f"{where}: '{key}': bad name {k!r}")
        if isinstance(v, Mapping | list):
            raise RuleError(f"{where}: '{key}.{k}' must be a scalar")
        out[k] = str(v)
    return out


def _escalation(value: Any, where: str) -> tuple[EscalationStep, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise RuleError(f"{where}: 'escalate' must be a list of steps")
    steps = []
    for i, s in enumerate(value):
        w = f"{where}: escalate[{i}]"
        if not isinstance(s, Mapping):
            raise RuleError(f"{w}: must be a mapping with after and severity")
        if "after_minutes" in s:
            after = s["after_minutes"]
            if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
                raise RuleError(f"{w}: 'after_minutes' must be a non-negative number")
            after_ms = round(after * 60_000)
        else:
            if "after" not in s:
                raise RuleError(f"{w}: missing 'after'")
            after_ms = _duration(s, "after", w)
        sev = s.get("severity", s.get("new_severity"))
        channels = _str_list(s.get("channels"), w, "channels")
        recipients = _str_list(s.get("escalate_to"), w, "escalate_to")
        if sev is None and not channels and not recipients:
            raise RuleError(f"{w}: needs a severity (or new_severity), channels or escalate_to")
        steps.append(EscalationStep(after_ms, None if sev is None else _severity(sev, w),
                                    tuple(dict.fromkeys((*channels, *recipients)))))
    steps.sort(key=lambda x: x.after_ms)
    return tuple(steps)


def _action(value: Any, scope: str, where: str) -> Action | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RuleError(f"{where}: 'action' must be a mapping with type and scope")
    typ = str(value.get("type", "")).upper()
    if typ not in ACTION_TYPES:
        raise RuleError(f"{where}: action type {value.get('type')!r} is not one of "
                        f"{', '.join(ACTION_TYPES)}")
    asc = str(value.get("scope", scope if scope in ACTION_SCOPES else "global"))
    if asc not in ACTION_SCOPES:
        raise RuleError(f"{where}: action scope {asc!r} is not one of {', '.join(ACTION_SCOPES)}")
    if asc == "strategy" and scope != "strategy":
        raise RuleError(f"{where}: action scope 'strategy' needs a strategy-scope rule")
    if asc == "portfolio" and scope not in ("portfolio", "strategy"):
        raise RuleError(f"{where}: action scope 'portfolio' needs a portfolio or strategy rule")
    params = {k: v for k, v in value.items() if k not in ("type", "scope")}
    return Action(typ, asc, params)


def _compile(expr: Any, scope: str, where: str) -> tuple[Any, frozenset[str]]:
    if not isinstance(expr, str) or not expr.strip():
        raise RuleError(f"{where}: missing 'expr' (a CEL expression)")
    try:
        program = cel.compile(expr)
    except Exception as e:  # the library raises ValueError; be safe with others
        msg = str(e).split("\n")
        raise RuleError(f"{where}: bad CEL expression {expr!r}: {' '.join(msg[:2])}") from None
    var = SCOPE_VARIABLE[scope]
    sample = {var: _num(SAMPLE_CONTEXT[scope]), "entity_id": "sample", "ts_ms": 0.0}
    try:
        result = program.execute(sample)
    except KeyError:
        result = False  # a field the sample lacks: allowed (data may carry more)
    except Exception as e:
        text = str(e).split(". ")[0]
        raise RuleError(f"{where}: expr {expr!r} fails on a {scope} context: {text}") from None
    if not isinstance(result, bool):
        raise RuleError(f"{where}: expr {expr!r} must return a bool, "
                        f"got {type(result).__name__}")
    return program, frozenset(program.variables())


def parse_rule(raw: Any, index: int, source: str) -> Rule:
    """Build one compiled :class:`Rule`; raises :class:`RuleError` naming file and rule."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{source}: rule #{index + 1}: must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{source}: rule #{index + 1}: missing 'name'")
    where = f"{source}: rule {name!r}"
    unknown = sorted(set(map(str, raw)) - _KNOWN_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)}")
    scope = raw.get("scope", "portfolio")
    if scope not in SCOPE_VARIABLE:
        raise RuleError(f"{where}: unknown scope {scope!r} (one of {', '.join(SCOPE_VARIABLE)})")
    expr = raw.get("expr", raw.get("condition"))
    program, variables = _compile(expr, scope, where)
    if "cooldown_minutes" in raw:
        cm = raw["cooldown_minutes"]
        if isinstance(cm, bool) or not isinstance(cm, int | float) or cm < 0:
            raise RuleError(f"{where}: 'cooldown_minutes' must be a non-negative number")
        cooldown_ms = round(cm * 60_000)
    else:
        cooldown_ms = _duration(raw, "cooldown", where)
    annotations = _str_map(raw.get("annotations"), where, "annotations")
    if "message" in raw:
        annotations.setdefault("summary", str(raw["message"]))
    if "description" in raw:
        annotations.setdefault("description", str(raw["description"]))
    annotations.setdefault("summary", name)
    for k, text in annotations.items():
        for p in template_problems(text):
            raise RuleError(f"{where}: annotation {k!r}: {p}")
    labels = _str_map(raw.get("labels"), where, "labels")
    for reserved in ("alertname", "severity", scope):
        if reserved in labels:
            raise RuleError(f"{where}: label {reserved!r} is set by the engine")
    definition = {
        "name": name, "scope": scope, "expr": expr,
        "for_ms": _duration(raw, "for", where),
        "keep_firing_for_ms": _duration(raw, "keep_firing_for", where),
        "severity": _severity(raw.get("severity"), where),
        "labels": labels, "annotations": annotations, "cooldown_ms": cooldown_ms,
        "escalate": _escalation(raw.get("escalate"), where),
        "channels": _str_list(raw.get("channels"), where, "channels"),
        "action": _action(raw.get("action"), scope, where),
    }
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=repr)
                            .encode()).hexdigest()
    paths = extract_paths(expr, SCOPE_VARIABLE[scope])
    return Rule(**definition, definition_hash=digest, program=program,
                paths=paths if paths is not None else (), variables=variables,
                fast=compile_fast(expr, frozenset({SCOPE_VARIABLE[scope], "entity_id", "ts_ms"})))


@dataclass(frozen=True)
class RuleSet:
    """An immutable, compiled set of rules plus inhibition rules."""

    rules: tuple[Rule, ...]
    inhibit_rules: tuple[InhibitRule, ...] = ()
    source: str = "<memory>"
    plans: Mapping[str, ScopePlan] = field(default_factory=dict, repr=False)

    @property
    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}

    def __len__(self) -> int:
        return len(self.rules)

    @classmethod
    def build(cls, rules: tuple[Rule, ...], inhibit_rules: tuple[InhibitRule, ...] = (),
              source: str = "<memory>") -> RuleSet:
        plans = {}
        for scope, var in SCOPE_VARIABLE.items():
            rs = tuple(r for r in rules if r.scope == scope)
            if not rs:
                continue
            tree = _merge_tree([extract_paths(r.expr, var) for r in rs])
            plans[scope] = ScopePlan(scope, rs, tree,
                                     any("entity_id" in r.variables for r in rs),
                                     any("ts_ms" in r.variables for r in rs))
        return cls(rules, inhibit_rules, source, plans)


def _parse_all(data: Any, source: str) -> tuple[RuleSet | None, list[str]]:
    problems: list[str] = []
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        return None, [f"{source}: expected a mapping with a 'rules' list"]
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["rules"]):
        if isinstance(raw, Mapping) and raw.get("enabled", True) is False:
            continue
        try:
            rule = parse_rule(raw, i, source)
        except RuleError as e:
            problems.append(str(e))
            continue
        if rule.name in seen:
            problems.append(f"{source}: rule {rule.name!r}: duplicate name")
            continue
        seen.add(rule.name)
        rules.append(rule)
    inhibits = []
    for i, raw in enumerate(data.get("inhibit_rules") or []):
        try:
            if not isinstance(raw, Mapping):
                raise ValueError("must be a mapping")
            inhibits.append(InhibitRule.from_config(raw))
        except (ValueError, KeyError) as e:
            problems.append(f"{source}: inhibit_rules[{i}]: {e}")
    if problems:
        return None, problems
    return RuleSet.build(tuple(rules), tuple(inhibits), source), []


def parse_rules(data: Any, source: str = "<memory>") -> RuleSet:
    """Compile a rule set from parsed YAML; raises :class:`RuleError` listing every problem."""
    ruleset, problems = _parse_all(data, source)
    if ruleset is None:
        raise RuleError("\n".join(problems))
    return ruleset


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RuleError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RuleError(f"{path}: invalid YAML: {e}") from None


def read_rules_document(path: str | Path = DEFAULT_RULES_PATH) -> Any:
    """The parsed YAML of a rules file (what a reload audits, so a replay can compile it again)."""
    return _read_yaml(Path(path))


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> RuleSet:
    """Load and compile a rules file. On any problem raise :class:`RuleError`."""
    p = Path(path)
    return parse_rules(_read_yaml(p), str(p))


def check_file(path: str | Path) -> list[str]:
    """Every problem in a rules file (empty when valid), for ``mevrisk rules check FILE``."""
    p = Path(path)
    try:
        data = _read_yaml(p)
    except RuleError as e:
        return [str(e)]
    return _parse_all(data, str(p))[1]

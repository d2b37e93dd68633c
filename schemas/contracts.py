"""Wire contracts of the input topics: field specs, validation and JSON Schema export.

This module is the single source of truth for what upstream bots may publish.
It is plain Python (no Faust) so the same checks run in the worker, in the
offline replay and in the unit tests. The validated dictionaries go to the pipeline as
they are, and ``schemas/json/*.schema.json`` is exported from the specs here
(``mevrisk schemas export``).

Conventions: times are event times in integer milliseconds since the Unix epoch
(``ts_ms``); money is USD (``*_usd``); gas prices are gwei (``*_gwei``).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.errors import MevRiskError

MAX_MESSAGE_BYTES = 1_048_576
"""Messages larger than 1 MiB are rejected as ``oversized``."""

MAX_IDENTIFIER_CHARS = 128
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
"""Identifiers (assets, portfolios, strategies, sources, pools...): at most 128 printable ASCII
characters from a small set, so names are safe as Kafka keys, Prometheus labels and log text."""
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
MAX_LEGS = 64
"""A position carries at most 64 legs."""
MIN_TS_MS = 1_420_070_400_000
"""Event times before 2015-01-01 UTC are ``out_of_range`` (no MEV bot reports from before)."""
KNOWN_SOURCES = ("price-oracle", "gas-tracker", "liquidity-monitor", "volatility-index")
"""Feeds the engine tracks; a tick from any other source is ``unknown_source`` (a made-up name
would otherwise become a permanently stale feed that pages people)."""

DLQ_REASONS = (
    "oversized",
    "malformed_json",
    "non_finite",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "unknown_enum",
    "inconsistent",
    "unknown_source",
    "unknown_asset",
    "too_many_entities",
    "processing_error",
)
"""Every reason code a rejected message can carry (bounded Prometheus label values)."""

TICK_KINDS = ("price", "gas", "liquidity")
POSITION_ACTIONS = ("open", "update", "close")
POSITION_KINDS = ("arbitrage", "liquidation", "sandwich", "frontrun", "backrun", "jit", "other")


class ContractError(MevRiskError):
    """An input message breaks its wire contract; ``reason`` is one of ``DLQ_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FieldSpec:
    """One JSON field: its type, whether it is required, and its constraints."""

    name: str
    type: type
    description: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    """Inclusive upper bound; for signed numbers (``symmetric``) it bounds the absolute value."""
    symmetric: bool = False


@dataclass(frozen=True)
class Contract:
    """A topic's message contract: common fields plus fields required per ``kind``/``action``."""

    topic: str
    title: str
    fields: tuple[FieldSpec, ...]
    required_by: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def spec(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _f(name: str, type_: type, description: str, **kw: Any) -> FieldSpec:
    return FieldSpec(name=name, type=type_, description=description, **kw)


TICK = Contract(
    topic="mev.market.ticks",
    title="MarketTick",
    fields=(
        _f("kind", str, "price, gas or liquidity observation", enum=TICK_KINDS),
        _f("source", str, "feed name: price-oracle, gas-tracker, liquidity-monitor or volatility-index",
           enum=KNOWN_SOURCES),
        _f("ts_ms", int, "event time, ms since the Unix epoch (UTC)", minimum=MIN_TS_MS),
        _f("asset", str, "asset symbol (price and liquidity ticks)", required=False),
        _f("price_usd", float, "price in USD", required=False, exclusive_minimum=0, maximum=1e9),
        _f("chain", str, "network (gas ticks), e.g. ethereum", required=False),
        _f("base_fee_gwei", float, "base fee in gwei", required=False, minimum=0, maximum=1e6),
        _f("priority_fee_gwei", float, "priority fee in gwei", required=False, minimum=0, maximum=1e6),
        _f("pool", str, "pool or venue (liquidity ticks)", required=False),
        _f("depth_usd", float, "USD depth within the quoted spread", required=False, minimum=0, maximum=1e12),
        _f("spread_bps", float, "bid/ask spread in basis points", required=False, minimum=0, maximum=10_000),
        _f("volume_usd", float, "traded volume in USD", required=False, minimum=0, maximum=1e12),
    ),
    required_by={
        "kind": {
            "price": ("asset", "price_usd"),
            "gas": ("chain", "base_fee_gwei", "priority_fee_gwei"),
            "liquidity": ("asset", "pool", "depth_usd", "spread_bps"),
        }
    },
)

POSITION = Contract(
    topic="mev.positions",
    title="PositionEvent",
    fields=(
        _f("position_id", str, "position identifier, unique per portfolio"),
        _f("seq", int, "per-position sequence number; stale or duplicate seqs are ignored", minimum=0,
           maximum=2**53),
        _f("action", str, "open, update or close", enum=POSITION_ACTIONS),
        _f("portfolio", str, "portfolio (Kafka key)"),
        _f("strategy", str, "strategy that holds the position"),
        _f("kind", str, "MEV strategy kind", enum=POSITION_KINDS),
        _f("chain", str, "network, e.g. ethereum"),
        _f("protocol", str, "protocol or venue, e.g. uniswap-v3"),
        _f("asset", str, "main asset symbol"),
        _f("quantity", float, "signed units of asset: positive long, negative short", maximum=1e12,
           symmetric=True),
        _f("notional_usd", float, "signed USD value at entry (quantity x entry price)", maximum=1e10,
           symmetric=True),
        _f("entry_price_usd", float, "entry price in USD", exclusive_minimum=0, maximum=1e9),
        _f("ts_ms", int, "event time, ms since the Unix epoch (UTC)", minimum=MIN_TS_MS),
        _f("legs", list, "optional legs {asset, quantity, notional_usd}", required=False),
    ),
)

STRATEGY_STATS = Contract(
    topic="mev.strategy.stats",
    title="StrategyStats",
    fields=(
        _f("strategy", str, "strategy name (Kafka key)"),
        _f("portfolio", str, "portfolio the strategy trades for"),
        _f("chain", str, "network"),
        _f("ts_ms", int, "end of the interval, ms since the Unix epoch (UTC)", minimum=MIN_TS_MS),
        _f("interval_ms", int, "interval length in ms", exclusive_minimum=0, maximum=86_400_000),
        _f("bundles_submitted", int, "bundles sent to builders", minimum=0, maximum=10**9),
        _f("bundles_included", int, "bundles included on chain", minimum=0, maximum=10**9),
        _f("bundles_reverted", int, "bundles that reverted", minimum=0, maximum=10**9),
        _f("gas_spent_usd", float, "gas paid in USD", minimum=0, maximum=1e10),
        _f("gross_pnl_usd", float, "gross P&L in USD (positive = profit)", maximum=1e10, symmetric=True),
        _f("net_pnl_usd", float, "net P&L in USD after gas and tips (positive = profit)", maximum=1e10,
           symmetric=True),
    ),
)

INPUT_CONTRACTS: dict[str, Contract] = {c.topic: c for c in (TICK, POSITION, STRATEGY_STATS)}
LEG_SPECS = (
    FieldSpec("asset", str, "leg asset symbol"),
    FieldSpec("quantity", float, "signed units of the leg's asset", maximum=1e12, symmetric=True),
    FieldSpec("notional_usd", float, "signed USD value of the leg", maximum=1e10, symmetric=True),
)
LEG_FIELDS = tuple((spec.name, spec.type) for spec in LEG_SPECS)


_NON_FINITE_TOKEN = re.compile(rb"(?<![A-Za-z0-9_\"])(-?Infinity|NaN)(?![A-Za-z0-9_\"])")
DEFAULT_MAX_FUTURE_SKEW_MS = 300_000
"""Event times more than 5 minutes ahead of the wall clock are ``out_of_range`` (they would drag
the event-time clock forward and make every honest event late)."""


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse message bytes into a JSON object, or raise ``ContractError``.

    Errors are classified without a second, recursive parse (a deeply nested value must not
    reach a recursive parser): ``non_finite`` when a bare NaN/Infinity token appears.

    >>> decode(b'{"price_usd": NaN}')
    Traceback (most recent call last):
    ...
    schemas.contracts.ContractError: non_finite: the number NaN is not allowed
    >>> decode(b"[" * 100_000 + b"]" * 100_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    schemas.contracts.ContractError: malformed_json: not valid JSON (...)
    """
    if raw is None:
        raise ContractError("malformed_json", "the message has no value (null tombstone)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError("oversized", f"{len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        token = _NON_FINITE_TOKEN.search(raw)
        if token is not None:
            number = token.group(1).decode()
            raise ContractError("non_finite", f"the number {number} is not allowed") from None
        raise ContractError("malformed_json", f"not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(obj, dict):
        raise ContractError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _brief(value: Any) -> str:
    """A short, non-recursive description of a value for an error message (a container nested
    1,000 deep would make ``repr`` recurse past Python's limit).

    >>> _brief([[[1]]]), _brief("x" * 100)[-4:], _brief(True)
    ('an array', 'xxx…', 'True')
    """
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def _check_number(spec: FieldSpec, value: Any, name: str) -> Any:
    if spec.minimum is not None and value < spec.minimum:
        raise ContractError("out_of_range", f"field '{name}' must be >= {spec.minimum}, got {value}")
    if spec.exclusive_minimum is not None and value <= spec.exclusive_minimum:
        raise ContractError(
            "out_of_range", f"field '{name}' must be > {spec.exclusive_minimum}, got {value}"
        )
    if spec.maximum is not None and (abs(value) if spec.symmetric else value) > spec.maximum:
        bound = f"|{name}|" if spec.symmetric else f"'{name}'"
        raise ContractError("out_of_range", f"field {bound} must be <= {spec.maximum:g}, got {value:g}")
    return value


def _check_value(spec: FieldSpec, value: Any, where: str = "") -> Any:
    name = f"{where}{spec.name}"
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError("wrong_type", f"field '{name}' must be a number, got {_brief(value)}")
        if isinstance(value, int) and abs(value) > 2**63:
            raise ContractError("out_of_range", f"field '{name}' is out of range")
        value = float(value)
        if not math.isfinite(value):
            raise ContractError("non_finite", f"field '{name}' must be finite, got {value}")
        if value != 0.0 and abs(value) < 1e-300:  # subnormal: no price, quantity or fee is that small
            raise ContractError("out_of_range", f"field '{name}' is too small to be meaningful, got {value}")
        value = value + 0.0  # -0.0 -> 0.0: one canonical zero for ordering and hashing
    elif spec.type is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError("wrong_type", f"field '{name}' must be an integer, got {_brief(value)}")
    elif not isinstance(value, spec.type):
        names: dict[type, str] = {str: "a string", list: "an array"}
        expected = names.get(spec.type, spec.type.__name__)
        raise ContractError("wrong_type", f"field '{name}' must be {expected}, got {_brief(value)}")
    if spec.type is str:
        _check_identifier(spec, value, name)
    if spec.type in (int, float):
        _check_number(spec, value, name)
    if spec.type is list and len(value) > MAX_LEGS:
        raise ContractError("out_of_range", f"field '{name}' has {len(value)} items; at most {MAX_LEGS}")
    return value


def _check_identifier(spec: FieldSpec, value: str, name: str) -> None:
    if not value:
        raise ContractError("missing_field", f"field '{name}' must not be empty")
    if spec.enum is not None:
        if value not in spec.enum:
            reason = "unknown_source" if spec.name == "source" else "unknown_enum"
            expected = ", ".join(spec.enum)
            raise ContractError(reason, f"field '{name}' is {value[:40]!r}; expected one of {expected}")
        return
    if len(value) > MAX_IDENTIFIER_CHARS:
        raise ContractError(
            "out_of_range", f"field '{name}' is {len(value)} characters; at most {MAX_IDENTIFIER_CHARS}"
        )
    if _IDENTIFIER.match(value) is None:
        raise ContractError("wrong_type", f"field '{name}' has characters outside {IDENTIFIER_PATTERN}: "
                                          f"{value[:40]!r}")


def _check_legs(legs: list[Any]) -> list[dict[str, Any]]:
    clean = []
    for i, leg in enumerate(legs):
        if not isinstance(leg, dict):
            raise ContractError("wrong_type", f"legs[{i}] must be an object")
        out = {}
        for spec in LEG_SPECS:
            if spec.name not in leg:
                raise ContractError("missing_field", f"legs[{i}] lacks required field '{spec.name}'")
            out[spec.name] = _check_value(spec, leg[spec.name], f"legs[{i}].")
        clean.append(out)
    return clean


def _check_consistency(contract: Contract, out: dict[str, Any]) -> None:
    if contract is STRATEGY_STATS:
        done = out["bundles_included"] + out["bundles_reverted"]
        if done > out["bundles_submitted"]:
            raise ContractError(
                "inconsistent",
                f"bundles_included + bundles_reverted ({done}) exceeds "
                f"bundles_submitted ({out['bundles_submitted']})",
            )


def validate(
    contract: Contract, obj: Mapping[str, Any], *, now_ms: int | None = None,
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
) -> dict[str, Any]:
    """Check ``obj`` against ``contract``; return a clean dict (known fields only, floats coerced).

    ``now_ms`` (wall clock, ms) bounds event time from above: ``ts_ms`` more than
    ``max_future_skew_ms`` ahead is ``out_of_range``; None skips that check.
    Raises ``ContractError`` with a reason code and a message naming the field.
    """
    required = {s.name for s in contract.fields if s.required}
    for selector, by_value in contract.required_by.items():
        chosen = obj.get(selector)
        if isinstance(chosen, str):  # never str() an arbitrary value: a nested one recurses
            required.update(by_value.get(chosen, ()))
    out: dict[str, Any] = {}
    for spec in contract.fields:
        if spec.name not in obj or obj[spec.name] is None:
            if spec.name in required:
                raise ContractError("missing_field", f"required field '{spec.name}' is missing")
            continue
        out[spec.name] = _check_value(spec, obj[spec.name])
    if "legs" in out:
        out["legs"] = _check_legs(out["legs"])
    _check_consistency(contract, out)
    if now_ms is not None and out["ts_ms"] > now_ms + max_future_skew_ms:
        raise ContractError(
            "out_of_range",
            f"ts_ms {out['ts_ms']} is {(out['ts_ms'] - now_ms) / 1000:.0f} s ahead of the wall clock "
            f"(at most {max_future_skew_ms / 1000:.0f} s)",
        )
    return out


def validate_bytes(
    topic: str, raw: bytes | None, *, key: bytes | None = None, now_ms: int | None = None,
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
) -> dict[str, Any]:
    """Decode and validate one message of an input topic against the wall clock (``now_ms``,
    default: now). A ``key`` given for a partitioned topic must name the message's portfolio
    (positions) or strategy (stats): it decides the partition, so a mismatch is ``inconsistent``."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    clean = validate(INPUT_CONTRACTS[topic], decode(raw), now_ms=now_ms,
                     max_future_skew_ms=max_future_skew_ms)
    field_of_key = KEY_FIELDS.get(topic)
    if key is not None and field_of_key is not None and key != clean[field_of_key].encode():
        raise ContractError("inconsistent", f"the message key {key[:40]!r} is not its {field_of_key} "
                                            f"{clean[field_of_key]!r}")
    return clean


KEY_FIELDS = {"mev.positions": "portfolio", "mev.strategy.stats": "strategy"}
"""The field a partitioned input topic is keyed by."""

def broker_time_ms(timestamp: float | int | None, *, seconds: bool = False) -> int | None:
    """A record's broker timestamp in ms (topics use LogAppendTime), the clock that bounds its
    event time: the same record gets the same verdict live, in recovery and on every worker.

    >>> broker_time_ms(1_700_000_000.5, seconds=True), broker_time_ms(None)
    (1700000000500, None)
    """
    if timestamp is None or timestamp <= 0:
        return None
    return int(timestamp * 1000) if seconds else int(timestamp)


DLQ_EXCERPT_BYTES = 65_536
"""A dead letter keeps at most 64 KiB of the original bytes, plus their size and sha256."""


def excerpt(raw: bytes | None) -> tuple[bytes, int, str]:
    """``(first 64 KiB, original size, sha256 hex)`` of rejected bytes, for a bounded dead letter.

    >>> head, size, digest = excerpt(b"x" * 70_000)
    >>> len(head), size, digest[:12]
    (65536, 70000, 'bca09f4a757d')
    """
    raw = raw or b""
    return raw[:DLQ_EXCERPT_BYTES], len(raw), hashlib.sha256(raw).hexdigest()


_JSON_TYPES = {str: "string", int: "integer", float: "number", list: "array", bool: "boolean"}


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[spec.type], "description": spec.description}
    if spec.type is str and spec.enum is None:
        schema.update(minLength=1, maxLength=MAX_IDENTIFIER_CHARS, pattern=IDENTIFIER_PATTERN)
    if spec.enum is not None:
        schema["enum"] = list(spec.enum)
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.exclusive_minimum is not None:
        schema["exclusiveMinimum"] = spec.exclusive_minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
        if spec.symmetric:
            schema["minimum"] = -spec.maximum
    if spec.name == "legs":
        schema["maxItems"] = MAX_LEGS
        schema["items"] = {
            "type": "object",
            "required": [n for n, _ in LEG_FIELDS],
            "properties": {leg.name: _field_schema(leg) for leg in LEG_SPECS},
        }
    return schema


def json_schema(contract: Contract) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for producers of ``contract.topic``."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://mev-risk-stream/schemas/{contract.topic}.schema.json",
        "title": contract.title,
        "description": f"Message value on the Kafka topic '{contract.topic}'.",
        "type": "object",
        "required": [s.name for s in contract.fields if s.required],
        "properties": {s.name: _field_schema(s) for s in contract.fields},
    }
    conditions = [
        {"if": {"properties": {sel: {"const": value}}}, "then": {"required": list(names)}}
        for sel, by_value in contract.required_by.items()
        for value, names in by_value.items()
    ]
    if conditions:
        schema["allOf"] = conditions
    return schema


def exported_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema for every input contract."""
    return {f"{c.topic}.schema.json": json_schema(c) for c in INPUT_CONTRACTS.values()}

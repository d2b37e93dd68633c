"""Wire contracts of the input topics: field specs, validation and JSON Schema export.

This module is the single source of truth for what upstream bots may publish.
It is plain Python (no Faust) so the same checks run in the worker, in the
offline replay and in the unit tests. ``schemas/records.py`` builds the Faust
records from the validated dictionaries, and ``schemas/json/*.schema.json`` is
exported from the specs here (``mevrisk schemas export``).

Conventions: times are event times in integer milliseconds since the Unix epoch
(``ts_ms``); money is USD (``*_usd``); gas prices are gwei (``*_gwei``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.errors import MevRiskError

MAX_MESSAGE_BYTES = 1_048_576
"""Messages larger than 1 MiB are rejected as ``oversized``."""

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
        _f("source", str, "feed name, e.g. price-oracle, gas-tracker, liquidity-monitor"),
        _f("ts_ms", int, "event time, ms since the Unix epoch (UTC)", minimum=0),
        _f("asset", str, "asset symbol (price and liquidity ticks)", required=False),
        _f("price_usd", float, "price in USD", required=False, exclusive_minimum=0),
        _f("chain", str, "network (gas ticks), e.g. ethereum", required=False),
        _f("base_fee_gwei", float, "base fee in gwei", required=False, minimum=0),
        _f("priority_fee_gwei", float, "priority fee in gwei", required=False, minimum=0),
        _f("pool", str, "pool or venue (liquidity ticks)", required=False),
        _f("depth_usd", float, "USD depth within the quoted spread", required=False, minimum=0),
        _f("spread_bps", float, "bid/ask spread in basis points", required=False, minimum=0),
        _f("volume_usd", float, "traded volume in USD", required=False, minimum=0),
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
        _f("seq", int, "per-position sequence number; stale or duplicate seqs are ignored", minimum=0),
        _f("action", str, "open, update or close", enum=POSITION_ACTIONS),
        _f("portfolio", str, "portfolio (Kafka key)"),
        _f("strategy", str, "strategy that holds the position"),
        _f("kind", str, "MEV strategy kind", enum=POSITION_KINDS),
        _f("chain", str, "network, e.g. ethereum"),
        _f("protocol", str, "protocol or venue, e.g. uniswap-v3"),
        _f("asset", str, "main asset symbol"),
        _f("quantity", float, "signed units of asset: positive long, negative short"),
        _f("notional_usd", float, "signed USD value at entry (quantity x entry price)"),
        _f("entry_price_usd", float, "entry price in USD", exclusive_minimum=0),
        _f("ts_ms", int, "event time, ms since the Unix epoch (UTC)", minimum=0),
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
        _f("ts_ms", int, "end of the interval, ms since the Unix epoch (UTC)", minimum=0),
        _f("interval_ms", int, "interval length in ms", exclusive_minimum=0),
        _f("bundles_submitted", int, "bundles sent to builders", minimum=0),
        _f("bundles_included", int, "bundles included on chain", minimum=0),
        _f("bundles_reverted", int, "bundles that reverted", minimum=0),
        _f("gas_spent_usd", float, "gas paid in USD", minimum=0),
        _f("gross_pnl_usd", float, "gross P&L in USD (positive = profit)"),
        _f("net_pnl_usd", float, "net P&L in USD after gas and tips (positive = profit)"),
    ),
)

INPUT_CONTRACTS: dict[str, Contract] = {c.topic: c for c in (TICK, POSITION, STRATEGY_STATS)}
LEG_FIELDS = (("asset", str), ("quantity", float), ("notional_usd", float))


class _NonFinite(ValueError):
    pass


def _reject_constant(token: str) -> float:
    raise _NonFinite(token)


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse message bytes into a JSON object, or raise ``ContractError``."""
    if raw is None:
        raise ContractError("malformed_json", "the message has no value (null tombstone)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError("oversized", f"{len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            json.loads(raw, parse_constant=_reject_constant)
        except _NonFinite as nf:
            raise ContractError("non_finite", f"the number {nf} is not allowed") from None
        except ValueError:
            pass
        raise ContractError("malformed_json", f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ContractError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _check_value(spec: FieldSpec, value: Any, where: str = "") -> Any:
    name = f"{where}{spec.name}"
    if spec.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError("wrong_type", f"field '{name}' must be a number, got {value!r:.60}")
        value = float(value)
        if not math.isfinite(value):
            raise ContractError("non_finite", f"field '{name}' must be finite, got {value}")
    elif spec.type is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError("wrong_type", f"field '{name}' must be an integer, got {value!r:.60}")
    elif not isinstance(value, spec.type):
        expected = {str: "a string", list: "an array"}.get(spec.type, spec.type.__name__)
        raise ContractError("wrong_type", f"field '{name}' must be {expected}, got {value!r:.60}")
    if spec.type is str and not value:
        raise ContractError("missing_field", f"field '{name}' must not be empty")
    if spec.enum is not None and value not in spec.enum:
        raise ContractError(
            "unknown_enum", f"field '{name}' is {value!r:.40}; expected one of {', '.join(spec.enum)}"
        )
    if spec.minimum is not None and value < spec.minimum:
        raise ContractError("out_of_range", f"field '{name}' must be >= {spec.minimum}, got {value}")
    if spec.exclusive_minimum is not None and value <= spec.exclusive_minimum:
        raise ContractError(
            "out_of_range", f"field '{name}' must be > {spec.exclusive_minimum}, got {value}"
        )
    return value


def _check_legs(legs: list[Any]) -> list[dict[str, Any]]:
    clean = []
    for i, leg in enumerate(legs):
        if not isinstance(leg, dict):
            raise ContractError("wrong_type", f"legs[{i}] must be an object")
        out = {}
        for name, type_ in LEG_FIELDS:
            if name not in leg:
                raise ContractError("missing_field", f"legs[{i}] lacks required field '{name}'")
            out[name] = _check_value(FieldSpec(name, type_, ""), leg[name], f"legs[{i}].")
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


def validate(contract: Contract, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``obj`` against ``contract``; return a clean dict (known fields only, floats coerced).

    Raises ``ContractError`` with a reason code and a message naming the field.
    """
    required = {s.name for s in contract.fields if s.required}
    for selector, by_value in contract.required_by.items():
        required.update(by_value.get(str(obj.get(selector)), ()))
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
    return out


def validate_bytes(topic: str, raw: bytes | None) -> dict[str, Any]:
    """Decode and validate one message of an input topic."""
    return validate(INPUT_CONTRACTS[topic], decode(raw))


_JSON_TYPES = {str: "string", int: "integer", float: "number", list: "array", bool: "boolean"}


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[spec.type], "description": spec.description}
    if spec.type is str and spec.enum is None:
        schema["minLength"] = 1
    if spec.enum is not None:
        schema["enum"] = list(spec.enum)
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.exclusive_minimum is not None:
        schema["exclusiveMinimum"] = spec.exclusive_minimum
    if spec.name == "legs":
        schema["items"] = {
            "type": "object",
            "required": [n for n, _ in LEG_FIELDS],
            "properties": {n: {"type": _JSON_TYPES[t]} for n, t in LEG_FIELDS},
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

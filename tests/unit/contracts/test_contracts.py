"""Wire-contract validation: every bad input gets the right reason code and a readable detail."""

from __future__ import annotations

import json
import math

import orjson
import pytest

from schemas.contracts import (
    DLQ_REASONS,
    MAX_MESSAGE_BYTES,
    ContractError,
    exported_schemas,
    validate_bytes,
)
from streams.settings import REPO_ROOT

GOOD_TICK = {"kind": "price", "source": "price-oracle", "ts_ms": 1_700_000_000_000, "asset": "ETH",
             "price_usd": 3000.5}
GOOD_POSITION = {
    "position_id": "p-1", "seq": 1, "action": "open", "portfolio": "alpha", "strategy": "arb-1",
    "kind": "arbitrage", "chain": "ethereum", "protocol": "uniswap-v3", "asset": "ETH",
    "quantity": 2.0, "notional_usd": 6000.0, "entry_price_usd": 3000.0, "ts_ms": 1_700_000_000_000,
}
GOOD_STATS = {
    "strategy": "arb-1", "portfolio": "alpha", "chain": "ethereum", "ts_ms": 1_700_000_000_000,
    "interval_ms": 1000, "bundles_submitted": 10, "bundles_included": 6, "bundles_reverted": 2,
    "gas_spent_usd": 12.5, "gross_pnl_usd": 40.0, "net_pnl_usd": 27.5,
}


def _reason(topic: str, raw: bytes) -> str:
    with pytest.raises(ContractError) as info:
        validate_bytes(topic, raw)
    assert info.value.detail, "every rejection carries a readable detail"
    assert info.value.reason in DLQ_REASONS
    return info.value.reason


def test_good_messages_pass_and_coerce_numbers() -> None:
    tick = validate_bytes("mev.market.ticks", orjson.dumps({**GOOD_TICK, "price_usd": 3000}))
    assert tick["price_usd"] == 3000.0 and isinstance(tick["price_usd"], float)
    position = validate_bytes("mev.positions", orjson.dumps(GOOD_POSITION))
    assert position["seq"] == 1
    stats = validate_bytes("mev.strategy.stats", orjson.dumps(GOOD_STATS))
    assert stats["net_pnl_usd"] == 27.5


def test_unknown_fields_are_dropped() -> None:
    tick = validate_bytes("mev.market.ticks", orjson.dumps({**GOOD_TICK, "extra": 1}))
    assert "extra" not in tick


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("mev.positions", b"{not json", "malformed_json"),
        ("mev.positions", b"[1, 2]", "not_an_object"),
        ("mev.market.ticks", json.dumps({**GOOD_TICK, "price_usd": math.nan}).encode(), "non_finite"),
        ("mev.market.ticks", json.dumps({**GOOD_TICK, "price_usd": math.inf}).encode(), "non_finite"),
        ("mev.market.ticks", orjson.dumps({**GOOD_TICK, "price_usd": -1.0}), "out_of_range"),
        ("mev.market.ticks", orjson.dumps({**GOOD_TICK, "price_usd": "3000"}), "wrong_type"),
        ("mev.market.ticks", orjson.dumps({**GOOD_TICK, "kind": "weather"}), "unknown_enum"),
        ("mev.market.ticks", orjson.dumps({k: v for k, v in GOOD_TICK.items() if k != "asset"}),
         "missing_field"),
        ("mev.positions", orjson.dumps({**GOOD_POSITION, "seq": True}), "wrong_type"),
        ("mev.positions", orjson.dumps({**GOOD_POSITION, "kind": "rugpull"}), "unknown_enum"),
        ("mev.positions", orjson.dumps({**GOOD_POSITION, "legs": [{"asset": "ETH"}]}), "missing_field"),
        ("mev.strategy.stats", orjson.dumps({**GOOD_STATS, "bundles_included": 9}), "inconsistent"),
        ("mev.positions", b" " * (MAX_MESSAGE_BYTES + 1), "oversized"),
        ("mev.positions", None, "malformed_json"),
    ],
)
def test_bad_messages_get_their_reason(topic: str, raw: bytes, reason: str) -> None:
    assert _reason(topic, raw) == reason


def test_gas_tick_requires_gas_fields() -> None:
    gas = {"kind": "gas", "source": "gas-tracker", "ts_ms": 1_700_000_000_000, "chain": "ethereum",
           "base_fee_gwei": 20.0}
    assert _reason("mev.market.ticks", orjson.dumps(gas)) == "missing_field"
    assert validate_bytes("mev.market.ticks", orjson.dumps({**gas, "priority_fee_gwei": 1.5}))


def test_checked_in_json_schemas_match_the_code() -> None:
    """Fails when schemas/json drifts from schemas/contracts.py: run `mevrisk schemas export`."""
    for name, schema in exported_schemas().items():
        path = REPO_ROOT / "schemas" / "json" / name
        assert path.exists(), f"{path} missing"
        assert json.loads(path.read_text()) == schema, f"{name} drifted; run 'mevrisk schemas export'"


def test_json_schemas_require_what_validation_requires() -> None:
    schema = exported_schemas()["mev.positions.schema.json"]
    assert set(schema["required"]) >= {"position_id", "seq", "portfolio", "notional_usd"}
    tick = exported_schemas()["mev.market.ticks.schema.json"]
    price_rule = next(c for c in tick["allOf"] if c["if"]["properties"]["kind"]["const"] == "price")
    assert price_rule["then"]["required"] == ["asset", "price_usd"]

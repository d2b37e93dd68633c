"""A small, independent checker of the wire contract (docs/wire-contract.md) for tests."""

from __future__ import annotations

import math
from typing import Any

TICK_KINDS = {"price", "gas", "liquidity"}
POSITION_KINDS = {"arbitrage", "liquidation", "sandwich", "frontrun", "backrun", "jit", "other"}
ACTIONS = {"open", "update", "close"}

TICK_FIELDS = {
    "price": {"kind": str, "source": str, "ts_ms": int, "asset": str, "price_usd": float},
    "gas": {"kind": str, "source": str, "ts_ms": int, "chain": str, "base_fee_gwei": float,
            "priority_fee_gwei": float},
    "liquidity": {"kind": str, "source": str, "ts_ms": int, "asset": str, "pool": str,
                  "depth_usd": float, "spread_bps": float},
}
TICK_OPTIONAL = {"chain": str, "volume_usd": float}
POSITION_FIELDS = {
    "position_id": str, "seq": int, "action": str, "portfolio": str, "strategy": str,
    "kind": str, "chain": str, "protocol": str, "asset": str, "quantity": float,
    "notional_usd": float, "entry_price_usd": float, "ts_ms": int,
}
STATS_FIELDS = {
    "strategy": str, "portfolio": str, "chain": str, "ts_ms": int, "interval_ms": int,
    "bundles_submitted": int, "bundles_included": int, "bundles_reverted": int,
    "gas_spent_usd": float, "gross_pnl_usd": float, "net_pnl_usd": float,
}


def _typed(v: Any, t: type) -> bool:
    if t is float:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, t)


def _fields(v: dict, required: dict[str, type], optional: dict[str, type]) -> list[str]:
    errs = [f"missing {k}" for k in required if k not in v]
    allowed = {**required, **optional}
    errs += [f"unexpected {k}" for k in v if k not in allowed]
    errs += [f"{k}: {v[k]!r} is not {t.__name__}" for k, t in allowed.items()
             if k in v and not _typed(v[k], t)]
    return errs


def check(topic: str, key: str, v: dict) -> list[str]:
    """Contract violations of one message (empty when it conforms)."""
    if topic == "mev.market.ticks":
        kind = v.get("kind")
        if kind not in TICK_KINDS:
            return [f"unknown tick kind {kind!r}"]
        errs = _fields(v, TICK_FIELDS[kind], TICK_OPTIONAL)
        if kind == "price" and not errs and v["price_usd"] <= 0:
            errs.append("price_usd <= 0")
        for f in ("base_fee_gwei", "priority_fee_gwei", "depth_usd", "spread_bps", "volume_usd"):
            if _typed(v.get(f), float) and v[f] < 0:
                errs.append(f"{f} < 0")
        expected_key = v.get("chain") if kind == "gas" else v.get("asset")
        return errs + ([f"key {key!r} != {expected_key!r}"] if key != expected_key else [])
    if topic == "mev.positions":
        errs = _fields(v, POSITION_FIELDS, {"legs": list})
        if v.get("kind") not in POSITION_KINDS or v.get("action") not in ACTIONS:
            errs.append("bad enum")
        if _typed(v.get("entry_price_usd"), float) and v["entry_price_usd"] <= 0:
            errs.append("entry_price_usd <= 0")
        for leg in v.get("legs", []):
            errs += _fields(leg, {"asset": str, "quantity": float, "notional_usd": float}, {})
        return errs + ([f"key {key!r} != portfolio"] if key != v.get("portfolio") else [])
    if topic == "mev.strategy.stats":
        errs = _fields(v, STATS_FIELDS, {})
        if not errs:
            if v["bundles_included"] + v["bundles_reverted"] > v["bundles_submitted"]:
                errs.append("included + reverted > submitted")
            if min(v["bundles_submitted"], v["bundles_included"], v["bundles_reverted"]) < 0:
                errs.append("negative count")
            if v["interval_ms"] <= 0 or v["gas_spent_usd"] < 0:
                errs.append("bad interval or gas")
        return errs + ([f"key {key!r} != strategy"] if key != v.get("strategy") else [])
    return [f"unknown topic {topic}"]

"""Deliberately broken input for the DLQ path: each kind breaks the wire contract one way.

>>> ev = make_bad_message("negative-price", 1_700_000_000_000)
>>> ev.topic, ev.key, b"-" in ev.value
('mev.market.ticks', 'ETH', True)
>>> len(make_bad_message("oversized", 0, oversized_bytes=1_100_000).value) > 1_048_576
True
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from streams.sim.errors import SimulatorError
from streams.sim.events import POSITIONS, STATS, TICKS, Event

#: Every kind of bad message the `bad-messages` incident emits, in rotation order.
BAD_KINDS: tuple[str, ...] = (
    "malformed-json",
    "missing-field",
    "wrong-type",
    "negative-price",
    "nan",
    "infinity",
    "unknown-enum",
    "oversized",
)


def _tick(ts_ms: int, **over: object) -> dict[str, object]:
    v: dict[str, object] = {"kind": "price", "source": "price-oracle", "ts_ms": ts_ms,
                            "asset": "ETH", "price_usd": 3000.0}
    v.update(over)
    return v


def _malformed(ts: int, _n: int) -> Event:
    return Event(TICKS, "ETH", orjson.dumps(_tick(ts))[:-7], ts)  # truncated mid-number


def _missing(ts: int, _n: int) -> Event:
    v = {"seq": 0, "action": "open", "portfolio": "alpha", "strategy": "arb-dex-eth",
         "kind": "arbitrage", "chain": "ethereum", "protocol": "uniswap-v3", "asset": "ETH",
         "quantity": 1.0, "notional_usd": 3000.0, "entry_price_usd": 3000.0, "ts_ms": ts}
    return Event(POSITIONS, "alpha", orjson.dumps(v), ts)  # no position_id


def _wrong_type(ts: int, _n: int) -> Event:
    v = {"strategy": "sandwich-univ2", "portfolio": "beta", "chain": "ethereum", "ts_ms": ts,
         "interval_ms": 1000, "bundles_submitted": "12", "bundles_included": 3,
         "bundles_reverted": 1, "gas_spent_usd": 40.0, "gross_pnl_usd": 90.0,
         "net_pnl_usd": 20.0}
    return Event(STATS, "sandwich-univ2", orjson.dumps(v), ts)


def _negative(ts: int, _n: int) -> Event:
    return Event(TICKS, "ETH", orjson.dumps(_tick(ts, price_usd=-3000.0)), ts)


def _nan(ts: int, _n: int) -> Event:
    raw = orjson.dumps(_tick(ts, price_usd=0.0)).replace(b'"price_usd":0.0', b'"price_usd":NaN')
    return Event(TICKS, "ETH", raw, ts)


def _infinity(ts: int, n: int) -> Event:
    tok = b"Infinity" if n % 2 == 0 else b"-Infinity"
    v = {"kind": "liquidity", "source": "liquidity-monitor", "ts_ms": ts, "asset": "ETH",
         "pool": "uniswap-v3:ETH-USDC", "depth_usd": 0.0, "spread_bps": 2.0}
    raw = orjson.dumps(v).replace(b'"depth_usd":0.0', b'"depth_usd":' + tok)
    return Event(TICKS, "ETH", raw, ts)


def _unknown_enum(ts: int, _n: int) -> Event:
    return Event(TICKS, "ETH", orjson.dumps(_tick(ts, kind="orderbook")), ts)


def _oversized(ts: int, _n: int, size: int) -> Event:
    v = _tick(ts, note="x" * size)
    return Event(TICKS, "ETH", orjson.dumps(v), ts)


_BUILDERS: dict[str, Callable[[int, int], Event]] = {
    "malformed-json": _malformed,
    "missing-field": _missing,
    "wrong-type": _wrong_type,
    "negative-price": _negative,
    "nan": _nan,
    "infinity": _infinity,
    "unknown-enum": _unknown_enum,
}


def make_bad_message(kind: str, ts_ms: int, n: int = 0, *,
                     oversized_bytes: int = 1_200_000) -> Event:
    """One bad message of `kind` (see :data:`BAD_KINDS`) at event time `ts_ms`."""
    if kind == "oversized":
        return _oversized(ts_ms, n, oversized_bytes)
    try:
        return _BUILDERS[kind](ts_ms, n)
    except KeyError:
        raise SimulatorError(f"unknown bad-message kind {kind!r}; known: {BAD_KINDS}") from None

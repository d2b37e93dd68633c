"""One regression test per input that crashed, stalled or half-stopped a worker (issue 11).

Each was reproduced on a live worker; here each runs against the pure code that failed, so
it fails fast and exactly on a regression.
"""

from __future__ import annotations

import time

import orjson
import pytest

from agents.anomaly.models import ModelBundle
from agents.anomaly.varcast import VarForecaster
from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import RiskPipeline
from schemas.contracts import (
    DLQ_EXCERPT_BYTES,
    ContractError,
    decode,
    excerpt,
    validate_bytes,
)
from streams.sim.generator import Simulator

START_MS = 1_767_225_600_000
NOW_MS = START_MS + 3_600_000
OPTIONS = PipelineOptions(bar_ms=1000)
POSITION = {"position_id": "fz-1", "seq": 1, "action": "open", "portfolio": "alpha",
            "strategy": "arb-dex-eth", "kind": "arbitrage", "asset": "ETH", "quantity": 1.0,
            "notional_usd": 3000.0, "chain": "ethereum", "protocol": "uniswap-v3",
            "entry_price_usd": 3000.0, "ts_ms": START_MS + 30_000}
TICK = {"kind": "price", "source": "price-oracle", "ts_ms": START_MS + 30_000, "asset": "ETH",
        "price_usd": 3000.0}


def _reason(topic: str, value: object, **kw: object) -> str:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    with pytest.raises(ContractError) as caught:
        validate_bytes(topic, raw, now_ms=NOW_MS, **kw)  # type: ignore[arg-type]
    return caught.value.reason


def _warm_pipeline(duration_s: float = 30) -> tuple[RiskPipeline, list]:
    pipeline = build_pipeline(OPTIONS)
    out = []
    for ev in Simulator(7, START_MS, 150, duration_s):
        if isinstance(ev.value, dict):
            out += pipeline.offer(ev.topic, ev.value)
    return pipeline, out


# 1. crash loop from 100,000 nested brackets (RecursionError while classifying the error)
def test_deep_nesting_is_malformed_json_without_a_recursive_parse() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    assert _reason("mev.market.ticks", raw) == "malformed_json"
    with pytest.raises(ContractError):
        decode(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)


# 2. silent half-death: price 5e-324 raised ValueError('math domain error') in the tick model
def test_denormal_price_is_rejected_and_extreme_valid_prices_do_not_raise_in_the_models() -> None:
    assert _reason("mev.market.ticks", {**TICK, "price_usd": 5e-324}) == "out_of_range"
    models = ModelBundle(seed=0)
    for i, price in enumerate((3000.0, 3001.0, 2999.0, 3000.5, 1e-299, 1e9, 1e-299)):
        models.on_tick({**TICK, "ts_ms": START_MS + i * 100, "price_usd": price})


# 3. OverflowError in the VaR forecast from quantity 1e300 / price 1e308
def test_huge_numbers_are_rejected_and_the_var_forecast_never_overflows() -> None:
    assert _reason("mev.positions", {**POSITION, "quantity": 1e300, "notional_usd": 1e300}) == "out_of_range"
    assert _reason("mev.market.ticks", {**TICK, "price_usd": 1e308}) == "out_of_range"
    forecaster = VarForecaster(max_horizon=7)
    for var in (1.0, 10.0, 1e308, 1.0, 1e308, 0.0, 1e308):
        forecaster.learn_one({"var_95_usd": var})
    forecast = forecaster.forecast()
    assert len(forecast["forecast"]) == 7


# 4. min() of an empty sequence in run_scenario after odd positions
def test_odd_positions_never_stop_snapshots() -> None:
    pipeline, _ = _warm_pipeline()
    odd = [
        {**POSITION, "position_id": "fz-2", "asset": "NOPE"},
        {**POSITION, "position_id": "fz-3", "action": "close"},
        {**POSITION, "position_id": "fz-4", "seq": 2**53},
        {**POSITION, "position_id": "fz-5",
         "legs": [{"asset": "ETH", "quantity": 1, "notional_usd": 1}] * 64},
        {**POSITION, "position_id": "fz-6", "quantity": -1e12, "notional_usd": -1e10},
        {**POSITION, "position_id": "fz-7", "legs": [{"asset": "GHOST", "quantity": 1e12,
                                                      "notional_usd": 1e10}]},
    ]
    out = []
    for value in odd:
        clean = validate_bytes("mev.positions", orjson.dumps(value), now_ms=NOW_MS)
        out += pipeline.offer("mev.positions", clean)
    out += pipeline.heartbeat(START_MS + 40_000)
    alpha = [v for t, k, v in out if t == "risk.snapshots" and k == "alpha"]
    assert alpha and "var_95_usd" in alpha[-1]
    assert all(v is not None for v in alpha[-1]["stress"].values())


# 5. permanent stall: ts_ms 9e15 stepped the clock bar by bar
def test_far_future_event_time_is_rejected_and_cannot_stall_the_clock() -> None:
    assert _reason("mev.market.ticks", {**TICK, "ts_ms": 9_000_000_000_000_000}) == "out_of_range"
    assert _reason("mev.market.ticks", {**TICK, "ts_ms": NOW_MS + 301_000}) == "out_of_range"
    validate_bytes("mev.market.ticks", orjson.dumps({**TICK, "ts_ms": NOW_MS + 299_000}), now_ms=NOW_MS)
    assert _reason("mev.market.ticks", {**TICK, "ts_ms": 0}) == "out_of_range"
    pipeline, _ = _warm_pipeline(5)
    started = time.process_time()
    pipeline.offer("mev.market.ticks", {**TICK, "ts_ms": 9_000_000_000_000_000})
    pipeline.drain()
    assert time.process_time() - started < 5.0


# 6. a made-up source became a permanently stale feed (StaleFeed can page for any name)
@pytest.mark.parametrize("source", ["price-oracle\u0000\n", "price-oracle ", "made-up-feed"])
def test_unknown_sources_are_dead_lettered(source: str) -> None:
    assert _reason("mev.market.ticks", {**TICK, "source": source}) == "unknown_source"


# 7. unbounded identifiers, portfolio names, DLQ records
@pytest.mark.parametrize("field,value", [("asset", "X" * 200_000), ("asset", "ETH\u202e"),
                                         ("portfolio", "a" * 129), ("strategy", "s\nx")])
def test_identifiers_are_bounded(field: str, value: str) -> None:
    topic = "mev.market.ticks" if field == "asset" else "mev.positions"
    base = TICK if field == "asset" else POSITION
    assert _reason(topic, {**base, field: value}) in ("out_of_range", "wrong_type")


def test_new_portfolio_names_are_capped() -> None:
    pipeline, _ = _warm_pipeline(5)
    cap = pipeline.admission.limits.max_portfolios
    out = []
    for i in range(3 * cap):
        out += pipeline.offer("mev.positions", {**POSITION, "portfolio": f"fz-p{i}", "position_id": f"c{i}"})
    out += pipeline.heartbeat(START_MS + 40_000)
    assert len(pipeline.risk.portfolios) <= cap
    refused = [v for t, _, v in out if t == "risk.dlq"]
    assert len(refused) >= 2 * cap and {v["reason"] for v in refused} == {"too_many_entities"}


def test_a_dead_letter_keeps_at_most_64_kib_with_size_and_digest() -> None:
    raw = b'{"pad": "' + b"x" * (1536 * 1024) + b'"}'
    head, size, digest = excerpt(raw)
    assert len(head) == DLQ_EXCERPT_BYTES and size == len(raw) and len(digest) == 64
    assert _reason("mev.positions", raw[:-2] + b"\x00") == "oversized"


def test_a_key_that_is_not_the_portfolio_is_inconsistent() -> None:
    assert _reason("mev.positions", POSITION, key=b"beta") == "inconsistent"
    validate_bytes("mev.positions", orjson.dumps(POSITION), key=b"alpha", now_ms=NOW_MS)

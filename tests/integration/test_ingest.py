"""Real broker: good input is counted, bad input lands in risk.dlq with its reason, the worker goes on."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time

import orjson
import pytest

from schemas.contracts import MAX_MESSAGE_BYTES
from tests.integration.conftest import Env, consume, produce, run, wait_until

pytestmark = pytest.mark.integration


def _tick(ts_ms: int, price: float = 3000.0) -> bytes:
    return orjson.dumps(
        {"kind": "price", "source": "price-oracle", "ts_ms": ts_ms, "asset": "ETH", "price_usd": price}
    )


def _stats(**overrides: int) -> bytes:
    return orjson.dumps({
        "strategy": "arb-dex-eth", "portfolio": "alpha", "chain": "ethereum",
        "ts_ms": int(time.time() * 1000),
        "interval_ms": 1000, "bundles_submitted": 9, "bundles_included": 0, "bundles_reverted": 0,
        "gas_spent_usd": 0.0, "gross_pnl_usd": 0.0, "net_pnl_usd": 0.0, **overrides,
    })


BAD: list[tuple[str, bytes | None, str]] = [
    ("mev.positions", b"{not json", "malformed_json"),
    ("mev.positions", b'{"position_id": "p", "seq": 1, "price": NaN}', "non_finite"),
    ("mev.market.ticks", _tick(1, price=-5.0), "out_of_range"),
    ("mev.market.ticks", orjson.dumps({"kind": "weather", "source": "price-oracle", "ts_ms": 1}),
     "unknown_enum"),
    ("mev.market.ticks", _tick(1).replace(b"price-oracle", b"made-up-feed"), "unknown_source"),
    ("mev.strategy.stats", orjson.dumps({"strategy": "s"}), "missing_field"),
    ("mev.market.ticks", orjson.dumps({"kind": "price", "source": "price-oracle", "ts_ms": "soon",
                                       "asset": "ETH", "price_usd": 1.0}), "wrong_type"),
    ("mev.positions", b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "oversized"),
    ("mev.positions", b"[1, 2]", "not_an_object"),
    ("mev.strategy.stats", _stats(bundles_submitted=2, bundles_included=2, bundles_reverted=1),
     "inconsistent"),
    ("mev.positions", None, "malformed_json"),  # a tombstone (null value)
]


def test_bad_messages_go_to_dlq_and_worker_keeps_going(env: Env, start_worker) -> None:
    worker = start_worker()
    now = int(time.time() * 1000)
    key = {"mev.strategy.stats": b"arb-dex-eth"}  # its partition key is its strategy
    messages = [(env.topic(t), key.get(t, b"k"), raw) for t, raw, _ in BAD]
    messages += [(env.topic("mev.market.ticks"), b"ETH", _tick(now + i)) for i in range(5)]
    run(produce(env.bootstrap, messages))

    letters = run(consume(env.bootstrap, env.topic("risk.dlq"), len(BAD), timeout=60))
    assert sorted(letter["reason"] for letter in letters) == sorted(reason for *_, reason in BAD)
    for letter in letters:
        assert letter["source_topic"].startswith(env.prefix)
        assert letter["partition"] >= 0 and letter["offset"] >= 0
        assert letter["detail"]
        # the original bytes: whole, or their first 64 KiB with the size and sha256 of the whole
        by_digest = {hashlib.sha256(raw or b"").hexdigest(): raw or b"" for _, raw, _ in BAD}
        raw = by_digest[letter["value_sha256"]]
        assert letter["value_size"] == len(raw) and letter["truncated"] == (len(raw) > 65_536)
        assert raw.startswith(base64.b64decode(letter["value_b64"]))
        assert letter["truncated"] or base64.b64decode(letter["value_b64"]) == raw
    tombstone = [x for x in letters if x["value_b64"] == ""]
    assert len(tombstone) == 1 and "tombstone" in tombstone[0]["detail"], tombstone

    wait_until(lambda: worker.metric("mevrisk_events_in_total", topic="mev.market.ticks") == 5, 30,
               "five good ticks counted")
    assert worker.metric("mevrisk_dlq_messages_total", reason="oversized") == 1
    assert worker.metric("mevrisk_dlq_messages_total", reason="malformed_json") == 2  # one a tombstone
    assert worker.metric("mevrisk_dlq_messages_total", reason="not_an_object") == 1
    assert worker.metric("mevrisk_dlq_messages_total", reason="inconsistent") == 1
    worker.assert_healthy()  # the worker survives bad input: no crash, no exit, no dead component

    run(produce(env.bootstrap, [(env.topic("mev.market.ticks"), b"ETH", _tick(now + 10))]))
    wait_until(lambda: worker.metric("mevrisk_events_in_total", topic="mev.market.ticks") == 6, 30,
               "a good tick after the bad ones")

    def lag_measured() -> bool:
        text = worker.metrics_text()
        return "mevrisk_consumer_lag_messages{" in text and 'topic="mev.positions"' in text

    wait_until(lag_measured, 40, "consumer lag per topic-partition on /metrics")


README_KCAT_EXAMPLE = (
    '{"kind":"price","source":"price-oracle","ts_ms":1767225600000,"asset":"ETH","price_usd":3150.25}'
)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package kcat) is not installed")
def test_message_from_kcat_is_accepted(env: Env, start_worker) -> None:
    """The README's kcat example, published by a client this project did not write."""
    worker = start_worker()
    subprocess.run(
        ["kcat", "-P", "-b", env.bootstrap, "-t", env.topic("mev.market.ticks"), "-k", "ETH"],
        input=README_KCAT_EXAMPLE.encode() + b"\n", check=True, timeout=30,
    )
    wait_until(lambda: worker.metric("mevrisk_events_in_total", topic="mev.market.ticks") == 1, 30,
               "the kcat message counted")
    assert worker.metric("mevrisk_dlq_messages_total", reason="malformed_json") == 0

"""Real broker: good input is counted, bad input lands in risk.dlq with its reason, the worker goes on."""

from __future__ import annotations

import base64
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


BAD = [
    ("mev.positions", b"{not json", "malformed_json"),
    ("mev.positions", b'{"position_id": "p", "seq": 1, "price": NaN}', "non_finite"),
    ("mev.market.ticks", _tick(1, price=-5.0), "out_of_range"),
    ("mev.market.ticks", orjson.dumps({"kind": "weather", "source": "x", "ts_ms": 1}), "unknown_enum"),
    ("mev.strategy.stats", orjson.dumps({"strategy": "s"}), "missing_field"),
    ("mev.market.ticks", orjson.dumps({"kind": "price", "source": "x", "ts_ms": "soon", "asset": "ETH",
                                       "price_usd": 1.0}), "wrong_type"),
    ("mev.positions", b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "oversized"),
]


def test_bad_messages_go_to_dlq_and_worker_keeps_going(env: Env, start_worker) -> None:
    worker = start_worker()
    now = int(time.time() * 1000)
    messages = [(env.topic(t), b"k", raw) for t, raw, _ in BAD]
    messages += [(env.topic("mev.market.ticks"), b"ETH", _tick(now + i)) for i in range(5)]
    run(produce(env.bootstrap, messages))

    letters = run(consume(env.bootstrap, env.topic("risk.dlq"), len(BAD), timeout=60))
    assert sorted(letter["reason"] for letter in letters) == sorted(reason for *_, reason in BAD)
    for letter in letters:
        assert letter["source_topic"].startswith(env.prefix)
        assert letter["partition"] >= 0 and letter["offset"] >= 0
        assert letter["detail"]
        original = base64.b64decode(letter["value_b64"])
        assert any(original == raw for _, raw, _ in BAD)

    wait_until(lambda: worker.metric("mevrisk_events_in_total", topic="mev.market.ticks") == 5, 30,
               "five good ticks counted")
    assert worker.metric("mevrisk_dlq_messages_total", reason="oversized") == 1
    assert worker.metric("mevrisk_dlq_messages_total", reason="malformed_json") == 1
    assert worker.proc.poll() is None, "the worker must survive bad input"

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

"""A dead letter the broker refuses is logged and counted; the input agent is not crashed."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from streams import dlq, metrics


def _event(value: bytes | None, topic: str = "mev.positions") -> Any:
    message = SimpleNamespace(topic=topic, partition=2, offset=41, timestamp=time.time())
    return SimpleNamespace(message=message, key=b"alpha", value=value)


def _failures() -> float:
    return metrics.REGISTRY.get_sample_value("mevrisk_dlq_send_failures_total") or 0.0


async def test_a_refused_dead_letter_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(**_: Any) -> None:
        raise RuntimeError("broker says no")

    monkeypatch.setattr(dlq.dlq_topic, "send", refuse)
    before = _failures()
    with caplog.at_level(logging.ERROR, logger=dlq.log.name):
        assert await dlq.accept(_event(b"{not json")) is None  # rejected, and the agent goes on
    assert _failures() == before + 1
    assert "dead letter for mev.positions not sent (RuntimeError: broker says no)" in caplog.text


async def test_a_sent_dead_letter_carries_its_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    async def record(*, key: bytes, value: bytes) -> None:
        import orjson

        sent.append({"key": key, **orjson.loads(value)})

    monkeypatch.setattr(dlq.dlq_topic, "send", record)
    before = _failures()
    assert await dlq.accept(_event(None)) is None  # a tombstone
    assert _failures() == before
    (letter,) = sent
    assert letter["key"] == b"mev.positions" and letter["reason"] == "malformed_json"
    assert (letter["partition"], letter["offset"]) == (2, 41) and letter["value_size"] == 0

"""A send refused because the producer is gone is reported, not raised; other faults still raise."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerClosed
from faust.exceptions import NotReady, ProducerSendError

from streams.sending import producer_gone, send_unless_stopping


class FailingTopic:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((key, value))


def wrapped(cause: BaseException) -> ProducerSendError:
    error = ProducerSendError("send failed")
    error.__cause__ = cause
    return error


def test_producer_gone_recognises_stopped_and_unstarted_producers() -> None:
    assert producer_gone(NotReady("Producer service not yet started"))
    assert producer_gone(wrapped(ProducerClosed()))
    assert not producer_gone(wrapped(KafkaTimeoutError()))
    assert not producer_gone(ValueError("bad value"))


def test_send_unless_stopping_sends_when_the_producer_is_up() -> None:
    topic = FailingTopic(None)
    assert asyncio.run(send_unless_stopping(topic, b"k", b"v")) is True
    assert topic.sent == [(b"k", b"v")]


@pytest.mark.parametrize("error", [NotReady("not started"), wrapped(ProducerClosed())])
def test_send_unless_stopping_reports_a_gone_producer(error: BaseException) -> None:
    assert asyncio.run(send_unless_stopping(FailingTopic(error), b"k", b"v")) is False


def test_send_unless_stopping_raises_broker_faults() -> None:
    with pytest.raises(ProducerSendError):
        asyncio.run(send_unless_stopping(FailingTopic(wrapped(KafkaTimeoutError())), b"k", b"v"))

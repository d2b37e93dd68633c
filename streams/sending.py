"""Sends that tolerate shutdown: a producer that closed (or never started) is not a crash.

While the worker stops, timers and agents may still try to publish. Those outputs are
not lost: the deterministic replay regenerates whatever was not sent on the next start
(``streams.recovery``), so the send is reported as refused and the caller moves on.
"""

from __future__ import annotations

from typing import Any

from aiokafka.errors import ProducerClosed
from faust.exceptions import NotReady, ProducerSendError


def producer_gone(error: BaseException) -> bool:
    """True when ``error`` means the producer is stopped or not started, not a broker fault."""
    if isinstance(error, NotReady):
        return True
    return isinstance(error, ProducerSendError) and isinstance(error.__cause__, ProducerClosed)


async def send_unless_stopping(topic: Any, key: bytes, value: bytes) -> bool:
    """Send ``value`` on the faust ``topic``; False (nothing sent) when the producer is gone."""
    try:
        await topic.send(key=key, value=value)
    except (NotReady, ProducerSendError) as error:
        if not producer_gone(error):
            raise
        return False
    return True

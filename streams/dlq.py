"""Poison-message policy: validate input bytes; a rejected message goes to ``risk.dlq``.

Every rejected message is published with its source topic, partition, offset, the
reason code (``schemas.contracts.DLQ_REASONS``), a readable detail, and the original
key and value bytes (base64), counted by reason, and logged as ``topic[partition]@offset``.
Nothing is dropped silently and the worker keeps running.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from schemas.contracts import ContractError, validate_bytes
from schemas.records import DeadLetter
from streams import metrics
from streams.codecs import dumps
from streams.topics import contract_topic, dlq_topic

log = logging.getLogger(__name__)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: ContractError
) -> DeadLetter:
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=error.reason,
        detail=error.detail,
        key_b64=_b64(key),
        value_b64=_b64(value) or "",
        received_ts_ms=int(time.time() * 1000),
    )


async def accept(event: Any) -> dict[str, Any] | None:
    """Validate one Faust event of an input topic; return the clean dict or None after DLQ-ing it."""
    message = event.message
    topic = contract_topic(message.topic)
    try:
        clean = validate_bytes(topic, event.value)
    except ContractError as error:
        letter = dead_letter(
            message.topic, message.partition, message.offset, event.key, event.value, error
        )
        log.warning(
            "rejected %s[%d]@%d to risk.dlq: %s",
            message.topic, message.partition, message.offset, error,
        )
        await dlq_topic.send(key=message.topic.encode(), value=dumps(letter.asdict()))
        metrics.DLQ_MESSAGES.labels(error.reason).inc()
        metrics.OUTPUTS.labels("risk.dlq").inc()
        return None
    metrics.EVENTS_IN.labels(topic).inc()
    metrics.EVENT_LAG_SECONDS.labels(topic).set(time.time() - clean["ts_ms"] / 1000)
    return clean

"""Poison-message policy: validate input bytes; a rejected message goes to ``risk.dlq``.

Every rejected message is published with its source topic, partition, offset, the
reason code (``schemas.contracts.DLQ_REASONS``), a readable detail, and the original
key and value bytes (base64; at most 64 KiB of the value, with its size and sha256, so a
dead letter always fits the broker's limit), counted by reason, and logged as
``topic[partition]@offset``. Nothing is dropped silently and the worker keeps running: a
dead letter that cannot be sent is logged and counted (``mevrisk_dlq_send_failures_total``),
never raised into the input agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from typing import Any, NamedTuple

import orjson

from schemas.contracts import ContractError, broker_time_ms, excerpt, validate_bytes
from schemas.records import DeadLetter
from streams import kafka_clients, metrics
from streams.codecs import dumps
from streams.settings import get_settings
from streams.topics import contract_topic, dlq_topic

log = logging.getLogger(__name__)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: ContractError
) -> DeadLetter:
    head, size, digest = excerpt(value)
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=error.reason,
        detail=error.detail[:1000],
        key_b64=_b64(excerpt(key)[0] if key is not None else None),
        value_b64=_b64(head) or "",
        received_ts_ms=int(time.time() * 1000),
        value_size=size,
        value_sha256=digest,
        truncated=size > len(head),
    )


async def send_dead_letter(source_topic: str, letter: dict[str, Any]) -> bool:
    """Publish one dead letter; a failed send is logged and counted, never raised."""
    try:
        await dlq_topic.send(key=source_topic.encode(), value=dumps(letter))
    except Exception as exc:  # the input agent must survive a broker refusing the dead letter
        log.error("dead letter for %s not sent (%s: %s)", source_topic, type(exc).__name__, exc)
        metrics.DLQ_SEND_FAILURES.inc()
        return False
    metrics.DLQ_MESSAGES.labels(letter["reason"]).inc()
    metrics.OUTPUTS.labels("risk.dlq").inc()
    return True


class Rejected(NamedTuple):
    """An input record that broke its contract: its reason and its record key (decoded, bounded;
    None without one), which the pipeline's DLQ rate times it by (``RiskPipeline.reject``)."""

    reason: str
    key: str | None


RECORD_KEY_CHARS = 128
"""A rejected record's key is kept to this many characters (valid keys are at most 128)."""


def record_key(key: bytes | None) -> str | None:
    """A record key as the pipeline names it (undecodable bytes replaced, at most 128 characters).

    >>> record_key(b"ETH"), record_key(None)
    ('ETH', None)
    """
    return None if key is None else key[: RECORD_KEY_CHARS * 4].decode("utf-8", "replace")[:RECORD_KEY_CHARS]


async def accept(event: Any) -> dict[str, Any] | None:
    """Validate one Faust event of an input topic; return the clean dict or None after DLQ-ing it."""
    checked = await screen(event)
    return None if isinstance(checked, Rejected) else checked


async def screen(event: Any) -> dict[str, Any] | Rejected:
    """As :func:`accept`, but a rejected record gives its :class:`Rejected`."""
    message = event.message
    return await screen_record(message.topic, message.partition, message.offset, event.key, event.value,
                               broker_time_ms(message.timestamp, seconds=True))


async def accept_record(kafka_topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, broker_ms: int | None, *, speaks: bool = True
                        ) -> dict[str, Any] | None:
    """Validate one input record (``broker_ms``: its broker timestamp, Unix ms); return the clean
    dict or None after DLQ-ing it (only when this worker ``speaks`` for the record: one worker
    dead-letters each, the others only skip it)."""
    checked = await screen_record(kafka_topic, partition, offset, key, value, broker_ms, speaks=speaks)
    return None if isinstance(checked, Rejected) else checked


async def screen_record(kafka_topic: str, partition: int, offset: int, key: bytes | None,
                        value: bytes | None, broker_ms: int | None, *, speaks: bool = True
                        ) -> dict[str, Any] | Rejected:
    """As :func:`accept_record`, but a rejected record gives its :class:`Rejected`."""
    topic = contract_topic(kafka_topic)
    try:
        clean = validate_bytes(topic, value, key=key, now_ms=broker_ms,
                               max_future_skew_ms=get_settings().max_future_skew_ms)
    except ContractError as error:
        if speaks:
            letter = dead_letter(kafka_topic, partition, offset, key, value, error)
            log.warning("rejected %s[%d]@%d to risk.dlq: %s", kafka_topic, partition, offset, error)
            await send_dead_letter(kafka_topic, letter.asdict())
        return Rejected(error.reason, record_key(key))
    metrics.EVENTS_IN.labels(topic).inc()
    metrics.EVENT_LAG_SECONDS.labels(topic).set(time.time() - clean["ts_ms"] / 1000)
    return clean


QUARANTINE_READ_RECORDS = 10_000
"""Dead letters read back from the end of each ``risk.dlq`` partition at start for quarantines."""


async def quarantine(event: Any, component: str, error: BaseException) -> None:
    """A record that crashed ``component`` goes to ``risk.dlq`` as ``processing_error`` marked
    ``quarantined``, flushed before the worker stops: the restarted worker reads it back and skips
    that offset (``read_dead_letters``), so it never crashes on the same input twice."""
    message = event.message
    failure = ContractError("processing_error", f"crashed {component}: {type(error).__name__}: {error}")
    letter = dead_letter(message.topic, message.partition, message.offset, event.key, event.value, failure)
    record = {**letter.asdict(), "quarantined": True, "error_type": type(error).__name__,
              "entity": component}
    log.error("quarantining %s[%d]@%d after it crashed %s", message.topic, message.partition,
              message.offset, component)
    if await send_dead_letter(message.topic, record):
        from streams.app import app

        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.producer.flush(), timeout=10)


Record = tuple[str, int, int]
"""An input record: ``(contract topic, partition, offset)``."""


async def read_dead_letters(bootstrap: str) -> tuple[frozenset[Record], set[Record]]:
    """From the last ``QUARANTINE_READ_RECORDS`` of each ``risk.dlq`` partition: the input records
    quarantined after a crash, and every input record dead-lettered (``(contract topic, partition,
    offset)``; the market feed re-reads ticks after a restart and must not dead-letter one twice)."""

    from streams.recovery import _partitions, _read_ranges
    from streams.topics import DLQ

    found: set[Record] = set()
    lettered: set[Record] = set()

    def collect(message: Any) -> None:
        try:
            value = orjson.loads(message.value)
            if not isinstance(value, dict):
                return
            record = (contract_topic(str(value["source_topic"])), int(value["partition"]),
                      int(value["offset"]))
            lettered.add(record)
            if value.get("quarantined") is True:
                found.add(record)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not a dead letter of ours

    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4_194_304)
    await consumer.start()
    try:
        tps = await _partitions(consumer, DLQ)
        if tps:
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            ranges = {tp: (max(begin[tp], end[tp] - QUARANTINE_READ_RECORDS), end[tp]) for tp in tps}
            await _read_ranges(consumer, ranges, collect)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return frozenset(found), lettered

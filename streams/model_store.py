"""Kafka side of the model checkpoints: publish them to, and restore them from, ``risk.models``.

``risk.models`` is compacted: the last record of each key survives. Keys (see
:mod:`agents.anomaly.checkpoint` for the values and the exact restore semantics):

* ``ticks`` — the market-wide tick models, written by every worker (they are the same
  on every worker; the partition is the key's hash);
* ``portfolio:<name>`` — written only by the worker that owns the portfolio, to the
  partition number its ``mev.positions`` records come from (so the checkpoints scale
  by partition like the portfolios themselves).

The pipeline pickles the due parts at a bar boundary under the host lock (about 25 ms and
300 kB zlib'd per portfolio after 15 min of the demo simulator with 1 s bars, 2 kB for the
tick models: ``benchmarks/bench_models.py``; the parts are spread over the interval by key);
the host then sends them outside the lock. A send refused because the worker stops is dropped: the
previous checkpoint plus the replay give the same models on the next start.

Restore runs once at start, before the replay: the whole topic is read (a compacted
topic holds one record per key, plus what the cleaner has not compacted yet) and the
newest record of each key whose HMAC tag verifies with ``MEVRISK_CHECKPOINT_SECRET`` is
installed. A refused record (forged, another state version, foreign, corrupt, oversized)
is logged with its reason, counted (``mevrisk_model_checkpoints_total{outcome="refused"}``)
and that part starts cold; the worker never crashes on it. Without a secret, no checkpoint
is written or restored.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from faust.exceptions import NotReady, ProducerSendError
from prometheus_client import Counter, Gauge

from agents.anomaly.checkpoint import PORTFOLIO_PREFIX, Checkpoint, RestoreReport, restore
from agents.anomaly.models import ModelBundle
from streams import kafka_clients, metrics
from streams.recovery import _partitions, _read_ranges
from streams.sending import producer_gone
from streams.topics import MODELS

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 2_000_000
"""Below the topic's and the producer's 2 MiB limits; a larger part is skipped with a warning."""

CHECKPOINTS = Counter(
    "mevrisk_model_checkpoints_total", "Model checkpoint parts, by outcome (published, skipped, "
    "restored, refused).", ["outcome"], registry=metrics.REGISTRY,
)
for _outcome in ("published", "skipped", "restored", "refused"):
    CHECKPOINTS.labels(_outcome)
CHECKPOINT_BYTES = Gauge(
    "mevrisk_model_checkpoint_bytes", "Size of the last published checkpoint, all its parts.",
    registry=metrics.REGISTRY,
)
CHECKPOINT_AS_OF_SECONDS = Gauge(
    "mevrisk_model_checkpoint_as_of_seconds", "Event time the last published checkpoint includes "
    "everything up to, Unix seconds.", registry=metrics.REGISTRY,
)


async def read_checkpoints(bootstrap: str, topic: str = MODELS) -> list[tuple[str, bytes | None]]:
    """Every record of ``risk.models`` as ``(key, value)``, in log order per partition."""
    records: list[tuple[str, bytes | None]] = []
    consumer = kafka_clients.consumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4_194_304
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        if tps:
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            ranges = {tp: (begin[tp], end[tp]) for tp in tps}
            await _read_ranges(
                consumer, ranges, lambda m: records.append((m.key.decode() if m.key else "", m.value))
            )
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return records


async def restore_models(bootstrap: str, bundle: ModelBundle, secret: bytes) -> RestoreReport:
    """Install the latest verified checkpoint of each part into ``bundle`` (before any event)."""
    started = time.monotonic()
    records = await read_checkpoints(bootstrap)
    report = restore(bundle, records, secret)
    for key, reason in sorted(report.refused.items()):
        log.error("model checkpoint %s[%s] refused, this part starts cold: %s", MODELS, key, reason)
    CHECKPOINTS.labels("restored").inc(len(report.restored))
    CHECKPOINTS.labels("refused").inc(len(report.refused))
    log.warning(
        "models: %s from %d records of %s in %.0f ms", report.summary(), len(records), MODELS,
        (time.monotonic() - started) * 1000,
    )
    return report


class CheckpointPublisher:
    """Sends drained checkpoints to ``risk.models``; portfolio parts only from their owner."""

    def __init__(self, topic: Any, owned: Callable[[int], bool | None], secret: bytes) -> None:
        self.topic = topic
        self.owned = owned
        self.secret = secret
        """Partition number -> owned by this worker (None: not known yet, e.g. during recovery)."""
        self.portfolio_partitions: dict[str, int] = {}

    def note_position(self, portfolio: str, partition: int) -> None:
        self.portfolio_partitions[portfolio] = partition

    async def publish(self, checkpoints: list[Checkpoint]) -> None:
        total = 0
        for checkpoint in checkpoints:
            partition = None
            if checkpoint.key.startswith(PORTFOLIO_PREFIX):
                partition = self.portfolio_partitions.get(checkpoint.key[len(PORTFOLIO_PREFIX):])
                if partition is None or self.owned(partition) is False:
                    CHECKPOINTS.labels("skipped").inc()
                    continue
            value = checkpoint.to_bytes(self.secret)
            if len(value) > MAX_VALUE_BYTES:
                log.warning("model checkpoint %s is %d bytes, above %d: not published",
                            checkpoint.key, len(value), MAX_VALUE_BYTES)
                CHECKPOINTS.labels("skipped").inc()
                continue
            try:
                await self.topic.send(key=checkpoint.key.encode(), value=value, partition=partition)
            except (NotReady, ProducerSendError) as error:
                if not producer_gone(error):
                    raise
                log.warning("producer closed; model checkpoint %s left to the next one", checkpoint.key)
                return
            total += len(value)
            CHECKPOINTS.labels("published").inc()
            CHECKPOINT_AS_OF_SECONDS.set(checkpoint.as_of_ms / 1000)
        if total:
            CHECKPOINT_BYTES.set(total)


def owns_positions_partition(partition: int) -> bool | None:
    """Whether this worker's consumer is assigned ``mev.positions[partition]`` (None: no assignment yet)."""
    from streams.app import app
    from streams.topics import POSITIONS

    try:
        assigned = app.consumer.assignment()
    except Exception:  # consumer not started yet (recovery runs before the first assignment)
        return None
    positions = {tp.partition for tp in assigned if tp.topic == POSITIONS}
    return (partition in positions) if positions else None

"""Kafka side of the state checkpoints (:mod:`agents.state`): written to and picked from ``risk.state``.

On only when ``MEVRISK_STATE_CHECKPOINT_SECS`` > 0 and ``MEVRISK_CHECKPOINT_SECRET`` is set
(:func:`state_checkpoint_ms`); otherwise recovery replays the retained inputs as before.

Writing. The pipeline's clock stops once one millisecond before each multiple of
``state_checkpoint_secs`` of event time (``RiskPipeline.checkpoint_ms``): the same instant on every
worker. There the host takes the state of the partitions it owns (:func:`agents.state.take`,
under the host lock) with, per input ``(topic, partition)``, the next offset not yet offered, and
:class:`StatePublisher` writes each blob as one record of the compacted topic ``risk.state``,
then, once every blob is acknowledged, a small index record naming them::

    <app>:<writer>:<key>:<slot>     a sealed blob (key market or p<N>), header as_of_ms
    <app>:<writer>:index:<slot>     {"as_of_ms", "partitions", "leader", "keys": {key: record key}}

``writer`` names the assignment of the worker that took it (``w0-1-2-3``): each worker writes its own
market blob, and the market blob of the owner of partition 0 (the leader) is the only one with the
global audit chain ``risk``. ``slot`` alternates 0/1 between takes, so compaction keeps the last two
complete sets of each writer: a worker killed while writing one leaves the previous one whole (its
index names blobs of another as_of, so the half-written set is never picked).

Reading (once per recovery, before the replay). The whole topic is read, keeping the last record
of each key (what compaction keeps). A set is complete when its index's blobs are all there with
the index's ``as_of_ms``. Complete sets of the same ``as_of_ms`` (the same instant, whoever wrote
them) combine (:func:`candidates`): a restarted worker finds its own; a worker that took over a dead
peer's partitions restores them from the peer's set and its own from its own. The blobs are
authenticated and decoded by :func:`agents.state.restore`; a refused one (forged, malformed,
oversized, other version, inconsistent) is logged and counted
(``mevrisk_state_checkpoints_total{outcome="refused"}``) and the next candidate is tried on a fresh
pipeline; with none usable, recovery replays the retained inputs (``outcome="none"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from streams import kafka_clients, metrics
from streams.recovery import _partitions, _read_ranges
from streams.settings import Settings
from streams.topics import STATE, STATE_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

MAX_BLOB_BYTES = STATE_MAX_MESSAGE_BYTES - 65_536
"""A larger blob is not written (nor its set's index): recovery falls back to the previous set."""

CHECKPOINTS = Counter(
    "mevrisk_state_checkpoints_total", "State checkpoints, by outcome (taken, published, skipped: "
    "oversized or the previous one still being written, restored, refused: a candidate that did not "
    "verify or fit, none: recovery found none usable and replayed the retained inputs).", ["outcome"],
    registry=metrics.REGISTRY,
)
for _outcome in ("taken", "published", "skipped", "restored", "refused", "none"):
    CHECKPOINTS.labels(_outcome)
TAKE_SECONDS = Gauge(
    "mevrisk_state_checkpoint_take_seconds", "Wall time of the last take() (under the host lock).",
    registry=metrics.REGISTRY,
)
CHECKPOINT_BYTES = Gauge(
    "mevrisk_state_checkpoint_bytes", "Size of the last state checkpoint, all its blobs.",
    registry=metrics.REGISTRY,
)


def state_checkpoint_ms(settings: Settings) -> int:
    """Event-time ms between state checkpoints, 0 when they are off (no interval or no secret)."""
    if settings.state_checkpoint_secs <= 0 or settings.checkpoint_secret is None:
        return 0
    return max(1, int(settings.state_checkpoint_secs * 1000))


def writer_id(partitions: Iterable[int]) -> str:
    """
    >>> writer_id({3, 0, 1})
    'w0-1-3'
    """
    return "w" + "-".join(str(p) for p in sorted(partitions))


def record_key(app_id: str, writer: str, key: str, slot: int) -> str:
    return f"{app_id}:{writer}:{key}:{slot}"


class StatePublisher:
    """Writes the blobs of one take, then its index (its own producer: blobs exceed 2 MiB)."""

    def __init__(self, bootstrap: str, app_id: str) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = kafka_clients.producer(bootstrap_servers=self.bootstrap, acks="all",
                                        max_request_size=STATE_MAX_MESSAGE_BYTES)
            await producer.start()
            self._producer = producer
        return self._producer

    async def publish(self, blobs: dict[str, bytes], *, as_of_ms: int, partitions: Iterable[int],
                      leader: bool, slot: int) -> bool:
        """Write ``blobs`` and their index; False (and no index) when a blob is too large."""
        owned = sorted(partitions)
        writer = writer_id(owned)
        oversized = {k: len(b) for k, b in blobs.items() if len(b) > MAX_BLOB_BYTES}
        if oversized:
            log.warning("state checkpoint as_of_ms=%d not written: blobs over %d bytes: %s",
                        as_of_ms, MAX_BLOB_BYTES, oversized)
            CHECKPOINTS.labels("skipped").inc()
            return False
        producer = await self._started()
        headers = [("as_of_ms", str(as_of_ms).encode())]
        keys = {key: record_key(self.app_id, writer, key, slot) for key in blobs}
        sent = [await producer.send(STATE, value=blob, key=keys[key].encode(), headers=headers)
                for key, blob in blobs.items()]
        await asyncio.gather(*sent)  # every blob durable before the index names them
        index = {"as_of_ms": as_of_ms, "partitions": owned, "leader": leader, "keys": keys}
        await (await producer.send(STATE, value=orjson.dumps(index), headers=headers,
                                   key=record_key(self.app_id, writer, "index", slot).encode()))
        CHECKPOINTS.labels("published").inc()
        CHECKPOINT_BYTES.set(sum(len(b) for b in blobs.values()))
        return True

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None


@dataclass
class Candidate:
    """A complete checkpoint set for an assignment: blobs by checkpoint key, all of one take."""

    as_of_ms: int
    writer: str
    slot: int
    blobs: dict[str, bytes] = field(default_factory=dict)
    written_ms: int = -1
    """Broker (append) time of the set's index record, wall-clock ms; -1: unknown."""


StateRecords = dict[str, tuple[int | None, bytes | None, int]]
"""The last record of each key of ``risk.state``: ``key -> (as_of_ms header, value, broker time ms)``."""


def _keep_latest(records: StateRecords, message: Any) -> None:
    """Keep ``message`` as its key's last record (what compaction keeps)."""
    as_of = None
    for name, value in message.headers or ():
        if name == "as_of_ms":
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                as_of = int(value.decode())
    if message.key is not None:
        records[message.key.decode(errors="replace")] = (as_of, message.value, int(message.timestamp))


async def read_state(bootstrap: str) -> StateRecords:
    """The last record of each key of ``risk.state`` (what compaction keeps)."""
    latest: StateRecords = {}
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=STATE_MAX_MESSAGE_BYTES + 1_048_576,
                                fetch_max_bytes=2 * STATE_MAX_MESSAGE_BYTES)

    def keep(message: Any) -> None:
        _keep_latest(latest, message)

    await consumer.start()
    try:
        tps = await _partitions(consumer, STATE)
        if tps:
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            await _read_ranges(consumer, {tp: (begin[tp], end[tp]) for tp in tps}, keep)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return latest


@dataclass
class _WrittenSet:
    as_of_ms: int
    writer: str
    slot: int
    blobs: dict[str, bytes]
    written_ms: int


def _complete_sets(records: StateRecords, app_id: str) -> list[_WrittenSet]:
    """Every set whose index names blobs that are all there with its ``as_of_ms``. Index records are
    unauthenticated: a malformed one is skipped (the blobs are verified at restore)."""
    found: list[_WrittenSet] = []
    prefix = f"{app_id}:"
    for key, (_, value, written_ms) in records.items():
        if not key.startswith(prefix) or value is None:
            continue
        parts = key[len(prefix):].split(":")
        if len(parts) != 3 or parts[1] != "index":
            continue
        try:
            index = orjson.loads(value)
            as_of, keys = int(index["as_of_ms"]), index["keys"]
            if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in keys.items()):
                continue
            blobs = {}
            for name, record in keys.items():
                blob_as_of, blob, _ = records.get(record, (None, None, -1))
                if blob_as_of != as_of or blob is None:
                    break  # overwritten by a later take, or never written: this set is not whole
                blobs[name] = blob
            else:
                found.append(_WrittenSet(as_of, parts[0], int(parts[2]), blobs, written_ms))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
    return found


def candidates(records: StateRecords, app_id: str, partitions: Iterable[int]) -> list[Candidate]:
    """Checkpoints covering ``partitions`` (market + one blob per partition), newest first.

    Every worker takes its checkpoints at the same instants (one millisecond before each multiple of
    the interval: ``RiskPipeline.checkpoint_ms``), so the complete sets of several writers with the
    same ``as_of_ms`` combine: a worker taking over a dead peer's partitions restores them from the
    peer's set and its own from its own. Each partition blob comes from the newest-written set that
    has it; the market blob from the set that gave ``p0`` when partition 0 is wanted (the leader's,
    with the global audit chain), else from any."""
    wanted = sorted(partitions)
    by_as_of: dict[int, list[_WrittenSet]] = {}
    for written in _complete_sets(records, app_id):
        by_as_of.setdefault(written.as_of_ms, []).append(written)
    found: list[Candidate] = []
    for as_of in sorted(by_as_of, reverse=True):
        sets = sorted(by_as_of[as_of], key=lambda w: w.written_ms, reverse=True)
        used: dict[str, _WrittenSet] = {}
        for p in wanted:
            source = next((w for w in sets if f"p{p}" in w.blobs), None)
            if source is None:
                break
            used[f"p{p}"] = source
        else:
            market = used["p0"] if 0 in wanted else next((w for w in sets if "market" in w.blobs), None)
            if market is None or "market" not in market.blobs:
                continue
            used["market"] = market
            writers = sorted({w.writer for w in used.values()})
            single = len(writers) == 1
            found.append(Candidate(
                as_of, "+".join(writers), market.slot if single else -1,
                {key: w.blobs[key] for key, w in used.items()},
                min(w.written_ms for w in used.values())))
    return found


async def load_candidates(bootstrap: str, app_id: str, partitions: Iterable[int],
                          warm: StateFollower | None = None) -> list[Candidate]:
    """The candidates for ``partitions``: from the warm copy when this worker keeps one and it has
    caught up (standby), else read from the topic."""
    started = time.monotonic()
    standby = warm is not None and warm.caught_up.is_set()
    records = dict(warm.records) if standby and warm is not None else await read_state(bootstrap)
    found = candidates(records, app_id, partitions)
    log.info("state: %d complete checkpoint sets for partitions %s among %d records of %s (%s) in %.0f ms",
             len(found), sorted(partitions), len(records), STATE, "warm copy" if standby else "read",
             (time.monotonic() - started) * 1000)
    return found


class StateFollower:
    """A standby's warm copy of ``risk.state`` (``MEVRISK_STANDBY_REPLICAS`` >= 1): the last record of
    each key, read from the beginning and then followed as workers write, so a worker taking over a
    dead peer's partitions finds the peer's newest checkpoint in memory instead of reading the topic.
    Every worker follows every partition's checkpoints (the topic is compacted: two sets per writer)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.records: StateRecords = {}
        self.caught_up = asyncio.Event()
        """Set once the copy holds everything the topic held when following started."""

    async def run(self) -> None:
        """Follow the topic until cancelled."""
        consumer = kafka_clients.consumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=STATE_MAX_MESSAGE_BYTES + 1_048_576,
                                    fetch_max_bytes=2 * STATE_MAX_MESSAGE_BYTES)
        await consumer.start()
        try:
            tps = await _partitions(consumer, STATE)
            while not tps:
                await asyncio.sleep(1.0)
                tps = await _partitions(consumer, STATE)
            end = await consumer.end_offsets(tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        _keep_latest(self.records, message)
                if not self.caught_up.is_set() and all(
                        [await consumer.position(tp) >= end[tp] for tp in tps]):
                    self.caught_up.set()
                    log.info("state: warm copy of %s caught up (%d records)", STATE, len(self.records))
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

"""The worker's pipeline host: owns this worker's pure pipeline, feeds it, publishes its outputs.

Inputs arrive from the input agents (``streams.ingest``: positions and strategy stats,
partitioned) and from the replicated market feed: a consumer outside the consumer group that reads
every partition of ``mev.market.ticks``, so each worker holds the whole market state
(DESIGN.md: market state every portfolio needs is replicated to every worker). On
start the feed rewinds far enough in event time to refill the return windows.

The online models are checkpointed to ``risk.models`` (``streams.model_store``): the
pipeline takes the due parts at bar boundaries, the host sends them after each call, and
on start ``recover_pipeline`` restores them before the replay, which then does not learn
again what they already hold (``agents.anomaly.checkpoint``).

With ``MEVRISK_STATE_CHECKPOINT_SECS`` (``streams.state_store``) the host instead takes the whole
state of its partitions at bar boundaries (``agents.state.take``, with the next input offset not
yet offered per partition, which it tracks), and ``recover`` restores the newest complete
checkpoint and replays only the inputs after it (the market feed starts each ticks partition
where the checkpoint left it); the model checkpoints are then off.

The host's pipeline is built by ``streams.wiring`` (at start by ``streams.worker``, again on every
rebuild); the reading of the topics that recovery needs is in ``streams.recovery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.audit.trust import sign
from agents.pipeline import PipelineStats
from agents.risk.engine import RiskEngine
from agents.source_errors import SourceErrors
from schemas.contracts import broker_time_ms
from streams import kafka_clients, metrics
from streams.api.hub import notify_listeners
from streams.app import app
from streams.codecs import dumps
from streams.dlq import Rejected, screen_record
from streams.heartbeat import heartbeat_target_ms
from streams.host_reads import HostReads
from streams.sending import send_unless_stopping
from streams.settings import get_settings
from streams.supervision import crashed, register, supervised
from streams.topics import MARKET_TICKS, POSITIONS, STRATEGY_STATS, contract_topic
from streams.wiring import checkpoint_secret, install_pipeline

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    """What the host needs of a pipeline: offer events, advance on idle, list outputs."""

    bar_ms: int

    def offer(
        self, topic: str, value: dict[str, Any], partition: int, wall_s: float | None,
        arrival_ms: int | None = None,
    ) -> list[tuple[str, str, dict[str, Any]]]: ...

    def expect(self, topic: str, partition: int, wall_s: float) -> None: ...

    def reject(self, topic: str, key: str | None, reason: str) -> list[tuple[str, str, dict[str, Any]]]: ...

    def heartbeat(self, watermark_ms: int) -> list[tuple[str, str, dict[str, Any]]]: ...

    def poll(self, wall_s: float) -> list[tuple[str, str, dict[str, Any]]]: ...

    def at_head(self, topic: str, partition: int, caught_up: bool, exact: bool = False) -> None: ...

    @property
    def watermark_ms(self) -> int: ...

    @property
    def buffered(self) -> int: ...

    def market_ahead(self, wall_s: float) -> bool: ...

    owned_partitions: frozenset[int] | None
    leader: bool
    latest_snapshots: dict[str, dict[str, Any]]

    def owns(self, kind: str, name: str) -> bool: ...

    def resume(self) -> list[tuple[str, str, dict[str, Any]]]: ...

    stats: PipelineStats
    risk: RiskEngine


STALL_S = 1.5
"""Wall seconds between two pipeline calls beyond which the worker counts as held up
(:meth:`PipelineHost.working_wall`): the release timer polls every second."""


class PipelineHost(HostReads):
    """Serialises access to the pipeline (one asyncio lock) and sends what it emits; the web views
    read it through :class:`streams.host_reads.HostReads` only."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self._lock = asyncio.Lock()
        self._publishing = asyncio.Lock()
        """Held while one step's outputs are sent; taken before the step releases ``_lock`` (asyncio
        locks wake their waiters in order), so outputs reach their topics in the order the pipeline
        made them, while the next step may already compute."""
        self.last_input_wall: float = time.monotonic()
        """When the newest input record was offered or rejected, or (whichever is later) when the
        last one offered finished (a reader held up by the pipeline reads its next record then)."""
        self.last_event_ts_ms: int = 0
        self._wall_seen = time.monotonic()
        self._wall_paused = 0.0
        self._inputs_in_flight = 0
        """Input records being offered or rejected now, waiting for the pipeline lock included: the
        idle heartbeat never runs while one is (a worker held up by its own publishing, say, is
        not a quiet input)."""
        self.publishers: dict[str, Any] = {}
        self.archive: Any = None
        """``agents.reports.archive.DayArchive``: sees every output, adds a day's reports when it closes."""
        self.ready = asyncio.Event()
        """Set once recovery has replayed the inputs below the committed offsets."""
        self.heads: Any = None
        """``streams.recovery.OutputHeads``: what was published before this start."""
        self.suppressed = 0
        self.consumer_lag: dict[str, int] = {}
        """``topic[partition]`` -> messages the consumer group has not committed yet."""
        self.checkpoints: Any = None
        """``streams.model_store.CheckpointPublisher`` (None: model checkpoints are not published)."""
        self.assignment: frozenset[int] | None = None
        """Input partitions (positions, strategy stats) the consumer group gave this worker."""
        self.assigned = asyncio.Event()
        """Set at the first assignment: recovery waits for it to know what this worker owns."""
        self.generation = 0
        """Bumped by every recovery; the market feed rewinds when it changes."""
        self._recovery: asyncio.Future[None] | None = None
        self._recoveries = 0
        self.source_errors = SourceErrors()
        """Rejected ticks per feed source (the seed's ERROR state, ``agents.source_errors``)."""
        self.quarantined: frozenset[tuple[str, int, int]] = frozenset()
        """``(topic, partition, offset)`` of input records that crashed an agent: never offered again."""
        # (partition, offset) of ticks already on risk.dlq: loaded from it at recovery, and the ones
        # this run letters, so a restarted feed does not letter them twice (bounded: an evicted one at
        # worst repeats once, and every dead letter carries value_sha256 for deduplication)
        self.dead_lettered_ticks: dict[tuple[int, int], None] = {}
        """``(partition, offset)`` of ticks already on ``risk.dlq`` (read back at recovery, then added
        to): the market feed re-reads ticks after a restart and dead-letters each once."""
        self._errors_exported: dict[str, int] = {}
        """Processing errors already added to the Prometheus counter, by stage."""
        self.next_offsets: dict[tuple[str, int], int] = {}
        """Per contract ``(topic, partition)``: the next input offset not yet offered to this pipeline
        (what a state checkpoint covers; reset with the pipeline)."""
        self.state_ms = 0
        """Event-time ms between state checkpoints (``streams.state_store``); 0: off."""
        self.state_secret: bytes | None = None
        self.audit_key: bytes | None = None
        """Signs the ``risk.audit`` records this worker publishes and authenticates those it reads
        back (``agents.audit.trust``); None without ``MEVRISK_CHECKPOINT_SECRET``."""
        self.state_publisher: Any = None
        """``streams.state_store.StatePublisher`` when state checkpoints are on."""
        self.market_start: dict[int, int] | None = None
        """Ticks partition -> offset the market feed starts at (from a restored checkpoint); None: rewind."""
        self.market_positioned = -1
        """The generation for which the market feed has positioned every ticks partition."""
        self.state_follower: Any = None
        """``streams.state_store.StateFollower``: this worker's warm copy of every partition's latest
        state checkpoint (standby, ``MEVRISK_STANDBY_REPLICAS``); None: recovery reads ``risk.state``."""
        self._metrics_wall = 0.0
        """Monotonic time the pipeline's metrics were last exported (``publish``)."""
        self.restored_written_ms = -1
        """Broker time (wall ms) the restored state checkpoint was written at; -1: none restored."""
        self._state_slot = 0
        self._state_sending: asyncio.Future[None] | None = None

    def reassign(self, partitions: frozenset[int]) -> None:
        """A rebalance gave this worker ``partitions``. Before the first recovery this only sets
        what it will own; afterwards a changed assignment rebuilds the pipeline by replay, so
        taken-over portfolios start from their full history and lost ones fall silent."""
        previous, self.assignment = self.assignment, partitions
        if not self.assigned.is_set():
            self.assigned.set()
            return
        if partitions == previous:
            return
        log.warning("assignment changed from %s to %s: rebuilding the pipeline by replay",
                    sorted(previous or ()), sorted(partitions))
        self.start_recovery()

    def start_recovery(self) -> asyncio.Future[None]:
        """(Re)start recovery: a running one is cancelled, since it replays for an old assignment."""
        self.ready.clear()
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()
        self._recovery = asyncio.ensure_future(self._recover(fresh=self._recoveries > 0))
        self._recovery.add_done_callback(_crash_on_failure)
        self._recoveries += 1
        return self._recovery

    async def _recover(self, *, fresh: bool) -> None:
        if fresh:  # the pipeline holds state of an older assignment (or of a cancelled replay)
            with contextlib.suppress(Exception):
                await app.producer.flush()  # what the old pipeline sent is in the heads read next
            async with self._lock:
                install_pipeline(host)
                self._errors_exported = {}  # the new pipeline counts from zero; the counter goes on
        await recover()

    async def offer(
        self, topic: str, value: dict[str, Any], partition: int, generation: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Offer a live input event; waits while the pipeline is being recovered, and drops the
        event if it was read for an older ``generation`` (the market feed re-reads after a rebuild)
        or, with state checkpoints on, if its ``offset`` is below the next one not yet offered (a
        restored checkpoint covers it; the group's committed offset may lag behind the checkpoint)."""
        if not self.ready.is_set():
            await self.ready.wait()
        if generation is not None and generation != self.generation:
            return
        if offset is not None and offset < self.next_offsets.get((topic, partition), -1):
            return  # offered before (recovery replayed it, or Faust delivered it again)
        await self.replay(topic, value, partition, offset)

    async def reject(self, topic: str, rejected: Rejected, partition: int, generation: int | None = None,
                     offset: int | None = None, *, live: bool = True) -> None:
        """Count an input record rejected to ``risk.dlq`` in the pipeline's DLQ rate
        (``RiskPipeline.reject``), in its place among the inputs; as :meth:`offer`, a live one waits
        for recovery and is dropped when read for an older ``generation`` or already replayed
        (``live=False``: recovery's own replay)."""
        if live and not self.ready.is_set():
            await self.ready.wait()
        if generation is not None and generation != self.generation:
            return
        if offset is not None and offset < self.next_offsets.get((topic, partition), -1):
            return
        if self.pipeline is None:
            return
        self._inputs_in_flight += 1
        try:
            async with self._lock:
                outputs = self.pipeline.reject(topic, rejected.key, rejected.reason)
                if not outputs:
                    return
                await self._publishing.acquire()
            await self._publish_in_order(outputs)
        finally:
            self._input_done()

    async def replay_rejected(self, topic: str, rejected: Rejected, partition: int,
                              offset: int | None = None) -> None:
        """Recovery's replay of a rejected partitioned input (:meth:`reject`, not waiting)."""
        await self.reject(topic, rejected, partition, offset=offset, live=False)

    async def expected_offset(self, topic: str, partition: int) -> int | None:
        """The next offset of a partitioned input the pipeline expects (None: unknown); waits while
        the pipeline is being recovered (``streams.continuity``)."""
        if not self.ready.is_set():
            await self.ready.wait()
        return self.next_offsets.get((topic, partition))

    def handled(self, topic: str, partition: int, offset: int) -> None:
        """A live partitioned input record was handled without being offered (rejected to
        risk.dlq, or quarantined): the next record expected is the one after it."""
        key = (topic, partition)
        self.next_offsets[key] = max(self.next_offsets.get(key, -1), offset + 1)

    async def replay(self, topic: str, value: dict[str, Any], partition: int,
                     offset: int | None = None) -> None:
        """Offer an input event now (recovery's replay, and live events once recovered)."""
        self.last_input_wall = time.monotonic()
        arrival_ms = int(time.time() * 1000)
        self.last_event_ts_ms = max(self.last_event_ts_ms, int(value.get("ts_ms", 0)))
        if self.pipeline is None:
            return
        if topic == "mev.positions" and self.checkpoints is not None:
            self.checkpoints.note_position(value["portfolio"], partition)
        self._inputs_in_flight += 1
        try:
            async with self._lock:
                outputs = self.pipeline.offer(topic, value, partition, self.working_wall(), arrival_ms)
                if offset is not None:
                    self.next_offsets[(topic, partition)] = offset + 1
                taken = await self._take_state_if_due(outputs)
                await self._publishing.acquire()
            await self._publish_in_order(outputs)
            self._send_state(taken)
        finally:
            self._input_done()

    def working_wall(self) -> float:
        """The wall clock the pipeline judges idle inputs by (monotonic seconds): it stands still
        while the worker makes no pipeline call, beyond :data:`STALL_S`. Called for every pipeline
        call that passes a wall time, under the lock. The release timer polls every second, so a
        longer gap means the worker itself was held up (its publishing, a loaded machine, a long
        step), and no input partition could be read meanwhile: counting that time as their silence
        made every partition idle at once and let the first record read after it move the clock
        past the records still unread (late, so the live outputs differed from the offline replay)."""
        now = time.monotonic()
        gap = now - self._wall_seen
        if gap > STALL_S:
            self._wall_paused += gap - STALL_S
        self._wall_seen = max(now, self._wall_seen)
        return now - self._wall_paused

    def _input_done(self) -> None:
        self._inputs_in_flight -= 1
        self.last_input_wall = max(self.last_input_wall, time.monotonic())

    def _quiet_for(self, idle_secs: float) -> float | None:
        """Wall seconds without input when the inputs count as quiet for the idle heartbeat (at
        least ``idle_secs``, no input record in flight, no tick partition known to have records
        left to read), else None."""
        idle = time.monotonic() - self.last_input_wall
        pending = getattr(self.pipeline, "inputs_pending", None)
        if (idle < idle_secs or self.last_event_ts_ms == 0 or self._inputs_in_flight
                or (pending is not None and pending())):
            return None
        return idle

    async def _take_state_if_due(self, outputs: list[tuple[str, str, dict[str, Any]]]
                                 ) -> tuple[dict[str, bytes], int, frozenset[int], bool] | None:
        """Under the lock, after a pipeline call: when the pipeline's clock stopped at a checkpoint
        instant (``RiskPipeline.checkpoint_due``, one millisecond before each multiple of
        ``state_ms``, the same instant on every worker), take the state checkpoint there
        (``agents.state.take`` runs in a thread, the lock held: nothing changes the pipeline
        meanwhile, and the event loop keeps serving), then resume the pipeline, adding what it
        releases to ``outputs``. At most one take per call; further stops are resumed untaken."""
        pipeline = self.pipeline
        taken = None
        while pipeline is not None and getattr(pipeline, "checkpoint_due", None) is not None:
            if taken is None:
                taken = await self._take(pipeline)
            outputs.extend(pipeline.resume())
        return taken

    async def _take(self, pipeline: Any) -> tuple[dict[str, bytes], int, frozenset[int], bool] | None:
        if (not self.state_ms or self.assignment is None or not self.ready.is_set()
                or self.market_positioned != self.generation or self.state_secret is None):
            return None
        from streams.state_store import CHECKPOINTS, TAKE_SECONDS

        if self._state_sending is not None and not self._state_sending.done():
            log.warning("state checkpoint skipped at %d: the previous one is still being written",
                        pipeline.checkpoint_due)
            CHECKPOINTS.labels("skipped").inc()
            return None
        buffered = pipeline.buffered
        if buffered > STATE_TAKE_MAX_BUFFERED:  # catching up: the blob would carry them all
            log.warning("state checkpoint skipped at %d: %d events buffered (more than %d)",
                        pipeline.checkpoint_due, buffered, STATE_TAKE_MAX_BUFFERED)
            CHECKPOINTS.labels("skipped").inc()
            return None
        from agents.state import take

        started = time.perf_counter()
        try:
            blobs = await asyncio.to_thread(take, cast(Any, pipeline), self.assignment,
                                            secret=self.state_secret, offsets=dict(self.next_offsets))
        except Exception as exc:  # oversized, or a bug: the previous checkpoint still recovers
            log.error("state checkpoint at %d not taken: %r", pipeline.checkpoint_due, exc)
            CHECKPOINTS.labels("skipped").inc()
            return None
        elapsed = time.perf_counter() - started
        TAKE_SECONDS.set(elapsed)
        CHECKPOINTS.labels("taken").inc()
        as_of = pipeline.checkpoint_due
        log.info("state checkpoint as_of_ms=%s partitions=%s bytes=%d taken in %.0f ms", as_of,
                 sorted(self.assignment), sum(len(b) for b in blobs.values()), elapsed * 1000)
        return blobs, int(as_of), self.assignment, bool(pipeline.leader)

    def _send_state(self, taken: tuple[dict[str, bytes], int, frozenset[int], bool] | None) -> None:
        """Write a taken checkpoint in the background (blobs, then the index naming them)."""
        if taken is None or self.state_publisher is None:
            return
        blobs, as_of, partitions, leader = taken
        slot, self._state_slot = self._state_slot, self._state_slot ^ 1

        async def send() -> None:
            try:
                # the outputs released before the checkpoint instant are durable before the checkpoint
                # is: a restore from it never regenerates them
                await app.producer.flush()
                await self.state_publisher.publish(blobs, as_of_ms=as_of, partitions=partitions,
                                                   leader=leader, slot=slot)
            except Exception as exc:  # the previous checkpoint (or the replay) still recovers
                log.warning("state checkpoint as_of_ms=%d not written: %r", as_of, exc)

        self._state_sending = asyncio.ensure_future(send())

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged by the broker (operator actions answer
        only after their alert events, controls and audit records are durable)."""
        await app.producer.flush()

    async def poll(self) -> None:
        """Let partitions that went idle stop holding the watermark back."""
        if self.pipeline is None or not self.ready.is_set():
            return
        async with self._lock:
            outputs = self.pipeline.poll(self.working_wall())
            taken = await self._take_state_if_due(outputs)
            await self._publishing.acquire()
        await self._publish_in_order(outputs)
        self._send_state(taken)

    def at_head(self, topic: str, partition: int, caught_up: bool, exact: bool = False) -> None:
        """Whether the reader of an input partition is at its end (``RiskPipeline.at_head``)."""
        if self.pipeline is not None:
            self.pipeline.at_head(topic, partition, caught_up, exact)

    async def heartbeat(self, idle_secs: float) -> None:
        """Advance the engine clock by the idle wall time when no input arrived for ``idle_secs``."""
        if self.pipeline is None or not self.ready.is_set() or self._quiet_for(idle_secs) is None:
            return
        async with self._lock:
            idle = self._quiet_for(idle_secs)  # again: inputs may have come while this waited
            if idle is None:
                return
            to_ms = heartbeat_target_ms(self.last_event_ts_ms, int(time.time() * 1000), int(idle * 1000))
            outputs = self.pipeline.heartbeat(to_ms)
            taken = await self._take_state_if_due(outputs)
            await self._publishing.acquire()
        await self._publish_in_order(outputs)
        self._send_state(taken)

    async def _publish_in_order(self, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Publish a step's outputs and release ``_publishing`` (acquired under ``_lock``)."""
        try:
            await self.publish(outputs)
        finally:
            self._publishing.release()

    async def publish(self, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
        checkpointer = getattr(self.pipeline, "checkpoints", None)
        if checkpointer is not None and checkpointer.pending:
            taken = checkpointer.drain()  # pickled under the lock by the pipeline call; sent outside it
            if self.checkpoints is not None:
                await self.checkpoints.publish(taken)
        if self.archive is not None:  # replayed outputs too: a rebuilt pipeline refills the open day
            outputs = [*outputs, *self.archive.observe(outputs)]
        sent: list[tuple[str, str, dict[str, Any]]] = []
        for topic_name, key, value in outputs:
            if topic_name == "risk.dlq" and not self.ready.is_set():
                self.suppressed += 1  # a replayed input's dead letter went out before the restart
                continue
            if self.heads is not None and self.heads.already_published(topic_name, value):
                self.suppressed += 1
                continue
            if topic_name == "risk.audit" and self.audit_key is not None:
                value = sign(value, self.audit_key)
            topic = self.publishers[topic_name]
            if not await send_unless_stopping(topic, key.encode(), dumps(value)):
                # shutting down: what was not sent is regenerated by the replay on the next start
                log.warning("producer closed; %d outputs left to recovery", len(outputs) - len(sent))
                return
            sent.append((topic_name, key, value))
            metrics.OUTPUTS.labels(topic_name).inc()
            if topic_name == "risk.snapshots":
                metrics.observe_snapshot(value)
            elif topic_name == "risk.alerts":
                metrics.ALERT_EVENTS.labels(value["transition"], value["severity"]).inc()
            elif topic_name == "risk.dlq":
                metrics.DLQ_MESSAGES.labels(value["reason"]).inc()
        if sent:
            notify_listeners(sent)
        now = time.monotonic()
        if self.pipeline is not None and (outputs or now - self._metrics_wall >= METRICS_EVERY_S):
            self._metrics_wall = now
            self._export_pipeline_metrics(self.pipeline)

    def _export_pipeline_metrics(self, pipeline: Pipeline) -> None:
        """The pipeline's clock and counters on ``/metrics`` (after every call that released
        outputs, else at most every ``METRICS_EVERY_S``: a tick that releases nothing costs none)."""
        metrics.WATERMARK_SECONDS.set(pipeline.watermark_ms / 1000)
        stats = pipeline.stats
        metrics.PIPELINE_EVENTS.labels("released").set(stats.released)
        metrics.PIPELINE_EVENTS.labels("late").set(stats.late)
        for topic, count in stats.late_by_topic.items():
            metrics.PIPELINE_EVENTS.labels(f"late:{topic}").set(count)
        metrics.PIPELINE_EVENTS.labels("stale_positions").set(stats.stale_positions)
        metrics.PIPELINE_EVENTS.labels("operator_replayed").set(stats.operator_replayed)
        metrics.PIPELINE_EVENTS.labels("operator_skipped").set(stats.operator_skipped)
        metrics.PIPELINE_EVENTS.labels("late_ticks").set(pipeline.risk.bars.late_ticks)
        for stage, count in stats.processing_errors.items():
            seen = self._errors_exported.get(stage, 0)
            if count > seen:
                metrics.PROCESSING_ERRORS.labels(stage).inc(count - seen)
                self._errors_exported[stage] = count


def _crash_on_failure(recovery: asyncio.Future[None]) -> None:
    """A recovery that failed (not one cancelled by a newer rebalance) stops the worker loudly."""
    if recovery.cancelled():
        return
    error = recovery.exception()
    if error is None:
        return
    log.error("pipeline recovery failed: %r", error)
    crashed("recovery", error)


DEAD_LETTERED_TICKS_KEPT = 100_000
"""How many (partition, offset) of lettered ticks a worker remembers beyond those read back from
``risk.dlq`` at recovery (the oldest go first)."""

METRICS_EVERY_S = 0.5
"""The most often the pipeline's clock and counters are exported while its calls release nothing."""

MARKET_BACKLOG_EVENTS = 20_000
"""Buffered events above which the market feed waits for the partitioned inputs when the ticks
are ahead of them (``_wait_for_partitioned_inputs``)."""

STATE_TAKE_MAX_BUFFERED = 100_000
"""A state checkpoint instant reached with more buffered events than this is skipped (the blob
would carry them all; the next instant is tried)."""

AUDIT_LOOKBACK_MS = 300_000
"""After a state restore, ``risk.audit`` is read from this long before the checkpoint was written
(wall ms): an operator action audited earlier is in the restored state (the take runs after the
action's pipeline call; the margin covers writes in flight and silences followed late)."""

host = PipelineHost()
register("recovery")


async def _position(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], keep: int,
                    starts: dict[int, int] | None) -> dict[TopicPartition, int]:
    """Start each partition where a restored checkpoint left it (``starts``), else ``keep`` messages
    before its end (or at its beginning); the start is the next offset not yet offered. Returns the
    offset each partition is read from."""
    begin = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    positions = {}
    for tp in partitions:
        start = starts[tp.partition] if starts and tp.partition in starts else max(begin[tp], end[tp] - keep)
        positions[tp] = max(start, begin[tp])
        consumer.seek(tp, positions[tp])
        host.next_offsets[(contract_topic(MARKET_TICKS), tp.partition)] = start
    return positions


def _mark_heads(consumer: AIOKafkaConsumer, read_to: dict[TopicPartition, int]) -> None:
    """Tell the pipeline which tick partitions the feed has read to their end (as of its last fetch):
    those stop holding the watermark soon after they fall silent (``RiskPipeline.at_head``)."""
    for tp, position in read_to.items():
        end = consumer.highwater(tp)
        if end is not None:
            host.at_head("mev.market.ticks", tp.partition, position >= end, exact=True)


async def mark_input_heads(ends: Any) -> None:
    """The same for the partitioned inputs this worker owns, read through Faust: at its end when
    the next offset the pipeline expects reaches the partition's end offset, asked of the broker
    (``ends``: an ``AIOKafkaConsumer.end_offsets``). Faust's own high watermark is only as fresh as
    its last fetch, which lags by hundreds of ms on a busy machine: records past it were then read
    late."""
    owned = host.assignment
    if not owned or host.pipeline is None:
        return
    tps = [TopicPartition(t, p) for t in (POSITIONS, STRATEGY_STATS) for p in sorted(owned)]
    try:
        found = await ends(tps)
    except Exception as exc:  # advisory: without it, those partitions hold the clock (idle_source_secs)
        log.debug("end offsets of the inputs not read: %r", exc)
        return
    for tp, end in found.items():
        topic = contract_topic(tp.topic)
        host.at_head(topic, tp.partition, host.next_offsets.get((topic, tp.partition), 0) >= end)


@app.task
@supervised("recover_pipeline")
async def recover_pipeline() -> None:
    """Once the group assigned this worker its partitions, replay and open the input agents."""
    await host.assigned.wait()
    if host._recovery is None:  # a rebalance may have started it already
        host.start_recovery()


def _own(pipeline: Pipeline | None) -> None:
    if pipeline is not None and host.assignment is not None:
        pipeline.owned_partitions = host.assignment
        pipeline.leader = 0 in host.assignment  # market-wide alerts: the owner of partition 0


async def recover() -> None:
    """Rebuild the host's pipeline, then set ``host.ready``.

    State checkpoints off: replay the partitioned inputs below the committed offsets (every
    partition: the state is whole; outputs only for the owned ones). On
    (``streams.state_store``): restore the newest complete checkpoint of the owned partitions and
    replay only their inputs after it; with none usable, replay the owned partitions' retained
    inputs. Either way the pipeline then holds only the owned partitions (plus the market)."""
    from streams.recovery import bootstrap_inputs, read_output_heads, schedule_operator_actions
    from streams.state_store import StatePublisher, state_checkpoint_ms
    from streams.topics import POSITIONS

    settings = get_settings()
    started = time.monotonic()
    phases: dict[str, float] = {}
    mark = [started]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - mark[0], 2)
        mark[0] = now

    _own(host.pipeline)
    if host.assignment is not None:
        log.info("recovering for %s partitions %s", POSITIONS, sorted(host.assignment))
    secret = checkpoint_secret(settings)
    host.state_ms, host.state_secret = state_checkpoint_ms(settings), secret
    host.next_offsets, host.market_start = {}, None
    host.restored_written_ms = -1
    if settings.state_checkpoint_secs > 0 and secret is None:
        log.warning("MEVRISK_CHECKPOINT_SECRET is not set: state checkpoints are off")
    if secret is None:
        log.warning("MEVRISK_CHECKPOINT_SECRET is not set: risk.audit records are not signed, and no "
                    "operator action or silence read back from risk.audit is applied")
    if host.state_ms and host.state_publisher is None:
        host.state_publisher = StatePublisher(settings.kafka_bootstrap_servers, app.conf.id)
    models = getattr(host.pipeline, "models", None)
    if models is not None and settings.model_restore and secret is None:
        log.warning("MEVRISK_CHECKPOINT_SECRET is not set: model checkpoints are neither written nor "
                    "restored, the models start cold")
    elif models is not None and settings.model_restore and secret is not None and not host.state_ms:
        from streams.model_store import restore_models

        await restore_models(settings.kafka_bootstrap_servers, models, secret)  # before any event
    from streams.dlq import read_dead_letters

    phase("models")
    host.quarantined, lettered = await read_dead_letters(settings.kafka_bootstrap_servers)
    host.dead_lettered_ticks = {(p, o): None for t, p, o in lettered if t == "mev.market.ticks"}
    phase("quarantine")
    if host.quarantined:
        log.warning("quarantined input records (each once failed an agent; skipped): %s",
                    sorted(host.quarantined)[:20])
    report = await _restore_state(settings.kafka_bootstrap_servers) if host.state_ms else None
    phase("state")
    if report is not None:
        host.next_offsets = dict(report.offsets)
        host.market_start = {p: o for (t, p), o in report.offsets.items() if t == "mev.market.ticks"}
    host.heads = await read_output_heads(settings.kafka_bootstrap_servers, host.audit_key)
    phase("output_heads")
    if host.pipeline is not None and not host.heads.empty:
        await schedule_operator_actions(
            settings.kafka_bootstrap_servers, host.pipeline, restored=report is not None,
            audit_key=host.audit_key,
            since_ms=(host.restored_written_ms - AUDIT_LOOKBACK_MS
                      if report is not None and host.restored_written_ms >= 0 else None))
    phase("audit")
    reached: dict[tuple[str, int], int] = {}
    if report is None:  # state checkpoints on: only the owned partitions, from their beginning
        replayed = await bootstrap_inputs(settings.kafka_bootstrap_servers, app.conf.id, host.replay,
                                          partitions=host.assignment if host.state_ms else None,
                                          skip=host.quarantined, reached=reached,
                                          reject=host.replay_rejected)
    else:  # only the owned partitions, from where the checkpoint left them
        replayed = await bootstrap_inputs(
            settings.kafka_bootstrap_servers, app.conf.id, host.replay,
            start={k: v for k, v in report.offsets.items() if k[0] != "mev.market.ticks"},
            partitions=host.assignment, skip=host.quarantined, reached=reached,
            reject=host.replay_rejected)
    for key, end in reached.items():  # records skipped by the replay (rejected, quarantined) too
        host.next_offsets[key] = max(host.next_offsets.get(key, -1), end)
    phase("replay")
    if host.pipeline is not None:  # a portfolio lost in a rebalance stops being exported here
        pipeline = host.pipeline
        metrics.forget_portfolios({p for p in pipeline.latest_snapshots if pipeline.owns("portfolio", p)})
    host.generation += 1
    host.ready.set()
    if report is not None:
        log.warning(
            "recovery: restored state as_of_ms=%d (%s) and replayed %d partitioned input records "
            "after it in %.1fs (%s); output heads %s", report.as_of_ms, report.summary(), replayed,
            time.monotonic() - started, phases, host.heads.newest(),
        )
    else:
        log.warning(
            "recovery: replayed %d partitioned input records in %.1fs (%s); output heads %s",
            replayed, time.monotonic() - started, phases, host.heads.newest(),
        )


async def _restore_state(bootstrap: str) -> Any:
    """Restore the newest usable state checkpoint of this worker's partitions into the (fresh)
    pipeline; a refused one is logged, counted and the next older tried on a fresh pipeline.
    Returns the ``agents.state.RestoreReport``, or None: replay the retained inputs."""
    from agents.state import restore
    from streams.state_store import CHECKPOINTS, load_candidates, writer_id
    from streams.topics import STATE

    if host.pipeline is None or host.assignment is None:
        return None
    started = time.monotonic()
    warm = host.state_follower is not None and host.state_follower.caught_up.is_set()
    try:
        found = await load_candidates(bootstrap, app.conf.id, host.assignment, warm=host.state_follower)
    except Exception as exc:  # unreadable topic: the retained inputs still rebuild the state
        log.error("state checkpoints not read: %r", exc)
        found = []
    read_s = time.monotonic() - started
    for candidate in found[:3]:
        started = time.monotonic()
        try:
            async with host._lock:
                report = await asyncio.to_thread(
                    restore, cast(Any, host.pipeline),
                    {"market": candidate.blobs["market"],
                     **{f"p{p}": candidate.blobs[f"p{p}"] for p in sorted(host.assignment)}},
                    secret=cast(bytes, host.state_secret), wall_s=host.working_wall())
        except Exception as exc:  # CheckpointError, or anything a bad blob provokes: never a crash
            log.error("state checkpoint as_of_ms=%d of %s refused: %s", candidate.as_of_ms,
                      candidate.writer, exc)
            CHECKPOINTS.labels("refused").inc()
            async with host._lock:
                install_pipeline(host)  # the refused restore may have installed part of it
                _own(host.pipeline)
            continue
        CHECKPOINTS.labels("restored").inc()
        host.restored_written_ms = candidate.written_ms
        log.warning("recovery: state checkpoint as_of_ms=%d of %s: %s %s in %.1fs, restored in %.1fs",
                    candidate.as_of_ms, candidate.writer, STATE, "from the warm copy" if warm else "read",
                    read_s, time.monotonic() - started)
        # the next take writes the other slot: the one restored from stays whole until it is done
        host._state_slot = candidate.slot ^ 1 if candidate.writer == writer_id(host.assignment) else 0
        return report
    CHECKPOINTS.labels("none").inc()
    log.warning("recovery: no usable state checkpoint for partitions %s (%d candidates): replaying the "
                "retained inputs", sorted(host.assignment), len(found))
    return None


async def _screen_tick(message: Any) -> dict[str, Any] | Rejected:
    """Validate a tick once, here (every worker reads every tick); a bad one goes to ``risk.dlq``
    from the worker that owns its partition number (the inputs share one partition count), once,
    and every worker counts it in its pipeline's DLQ rate."""
    where = (message.partition, message.offset)
    speaks = (host.assignment is not None and message.partition in host.assignment
              and where not in host.dead_lettered_ticks)
    tick = await screen_record(message.topic, message.partition, message.offset, message.key,
                               message.value, broker_time_ms(message.timestamp), speaks=speaks)
    if isinstance(tick, Rejected):
        if speaks:
            lettered = host.dead_lettered_ticks
            lettered[where] = None
            if len(lettered) > DEAD_LETTERED_TICKS_KEPT:
                del lettered[next(iter(lettered))]  # the oldest
        source = _claimed_source(message.value)
        if source is not None:
            host.source_errors.rejected(source)
    else:
        host.source_errors.accepted(str(tick["source"]))
    return tick


MAX_SOURCE_PARSE_BYTES = 65_536


def _claimed_source(raw: bytes | None) -> str | None:
    """The ``source`` a rejected tick names, if its bytes are a small JSON object with a short
    string there (untrusted: only used to count errors of sources already known)."""
    if not raw or len(raw) > MAX_SOURCE_PARSE_BYTES:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    source = value.get("source") if isinstance(value, dict) else None
    return source if isinstance(source, str) and 0 < len(source) <= 128 else None


@app.task
@supervised("replicate_market_feed")
async def replicate_market_feed() -> None:
    """Read every partition of the ticks topic (no consumer group) into this worker's pipeline."""
    settings = get_settings()
    consumer = kafka_clients.consumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4_194_304,
    )
    await consumer.start()
    try:
        partitions: list[TopicPartition] = []
        while not partitions:
            metadata = await consumer._client.fetch_all_metadata()  # no public listing call
            ids = metadata.partitions_for_topic(MARKET_TICKS) or set()
            partitions = [TopicPartition(MARKET_TICKS, p) for p in sorted(ids)]
            if not partitions:
                await asyncio.sleep(1.0)
        consumer.assign(partitions)
        while True:  # one pass per recovery: a rebuilt pipeline needs the market again
            await host.ready.wait()  # recovered positions are buffered first: the market cannot outrun them
            generation = host.generation
            read_to = await _position(consumer, partitions, settings.market_replay_messages,
                                      host.market_start)
            host.market_positioned = generation
            if host.pipeline is not None:
                now = host.working_wall()
                for tp in partitions:
                    host.pipeline.expect("mev.market.ticks", tp.partition, now)
                # partitions this worker may own: those it does not own fall idle and stop counting
                for topic in ("mev.positions", "mev.strategy.stats"):
                    for partition in range(settings.topic_partitions):
                        host.pipeline.expect(topic, partition, now)
            while generation == host.generation:  # until a rebuild asks for the market again
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    if messages:
                        read_to[tp] = messages[-1].offset + 1
                for message in (m for messages in batch.values() for m in messages):
                    if ("mev.market.ticks", message.partition, message.offset) in host.quarantined:
                        continue
                    tick = await _screen_tick(message)
                    if isinstance(tick, Rejected):
                        await host.reject("mev.market.ticks", tick, message.partition, generation,
                                          message.offset)
                        continue
                    await host.offer("mev.market.ticks", tick, message.partition, generation,
                                     message.offset)
                    if generation != host.generation:
                        break
                if generation == host.generation:
                    _mark_heads(consumer, read_to)
                await _wait_for_partitioned_inputs(generation)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _wait_for_partitioned_inputs(generation: int) -> None:
    """Backpressure on the market feed: while more than ``MARKET_BACKLOG_EVENTS`` events wait in
    the pipeline and the ticks are ahead of the partitioned inputs (catching up, the feed reads the
    ticks far faster than the positions arrive), wait for the positions instead of buffering ticks:
    memory and the state checkpoint (which carries the buffered events) stay bounded."""
    while generation == host.generation:
        pipeline = host.pipeline
        if (pipeline is None or pipeline.buffered <= MARKET_BACKLOG_EVENTS
                or not pipeline.market_ahead(time.monotonic())):
            return
        await asyncio.sleep(0.05)


@app.task
async def follow_state_checkpoints() -> None:
    """Standby: keep a warm copy of every partition's latest state checkpoint (``risk.state``) when
    ``MEVRISK_STANDBY_REPLICAS`` >= 1 and state checkpoints are on; a takeover restores from it.
    A failure only costs the copy (recovery then reads the topic): logged, and followed again."""
    from streams.state_store import StateFollower, state_checkpoint_ms

    settings = get_settings()
    if settings.standby_replicas < 1 or not state_checkpoint_ms(settings):
        return
    while True:
        follower = StateFollower(settings.kafka_bootstrap_servers)
        host.state_follower = follower
        try:
            await follower.run()
        except Exception as exc:
            host.state_follower = None
            log.warning("state: the warm copy of the checkpoints stopped (%r); following again in 5 s", exc)
            await asyncio.sleep(5.0)


@app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's SignalHandlerT matches no handler under mypy
async def stop_state_publisher(sender: Any, **_: Any) -> None:
    """Let a state checkpoint being written finish (at most 10 s), then close its producer."""
    if host._state_sending is not None and not host._state_sending.done():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(host._state_sending), timeout=10)
    if host.state_publisher is not None:
        await host.state_publisher.stop()


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode's SignalHandlerT matches no handler under mypy
async def on_partitions_assigned(sender: Any, assigned: set[TopicPartition], **_: Any) -> None:
    """Tell the host which input partitions are now this worker's (may rebuild its pipeline)."""
    from streams.topics import POSITIONS, STRATEGY_STATS

    inputs = {contract_topic(POSITIONS), contract_topic(STRATEGY_STATS)}
    host.reassign(frozenset(tp.partition for tp in assigned if contract_topic(tp.topic) in inputs))


@app.timer(interval=1.0)
@supervised("idle_heartbeat")
async def idle_heartbeat() -> None:
    """Keep the event-time clock moving while the inputs are idle (DESIGN.md, Time)."""
    await host.poll()
    await host.heartbeat(get_settings().idle_heartbeat_secs)


RELEASE_INTERVAL_S = max(0.01, get_settings().head_idle_ms / 2000)
"""How often the worker re-evaluates the watermark when ``MEVRISK_HEAD_IDLE_MS`` is on: twice per
that time, so a partition read to its end stops holding the clock within 1.5 of them."""


@app.task
@supervised("release_at_head")
async def release_at_head() -> None:
    """Release what partitions read to their end no longer hold back (``mark_input_heads``); a
    loop, not a timer: a release may run longer than the interval (it processes what it releases)."""
    settings = get_settings()
    if not settings.head_idle_ms:
        return
    consumer = kafka_clients.consumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                      enable_auto_commit=False)
    await consumer.start()
    try:
        while True:
            await asyncio.sleep(RELEASE_INTERVAL_S)
            await mark_input_heads(consumer.end_offsets)
            await host.poll()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


@app.timer(interval=10.0)
async def measure_consumer_lag() -> None:
    """Committed offsets of this app's consumer group against the end of each input partition."""

    from streams.recovery import committed_offsets
    from streams.topics import POSITIONS, STRATEGY_STATS

    settings = get_settings()
    try:
        committed = await committed_offsets(settings.kafka_bootstrap_servers, app.conf.id)
        consumer = kafka_clients.consumer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await consumer.start()
        try:
            metadata = await consumer._client.fetch_all_metadata()  # no public listing call
            tps = [TopicPartition(t, p) for t in (MARKET_TICKS, POSITIONS, STRATEGY_STATS)
                   for p in sorted(metadata.partitions_for_topic(t) or ())]
            end = await consumer.end_offsets(tps) if tps else {}
        finally:
            await consumer.stop()
    except Exception as exc:  # lag is advisory; never let it stop the worker
        log.warning("consumer lag not measured: %s", exc)
        return
    lag = {}
    for tp in tps:
        behind = max(0, end[tp] - committed.get(tp, 0))
        lag[f"{contract_topic(tp.topic)}[{tp.partition}]"] = behind
        metrics.CONSUMER_LAG.labels(contract_topic(tp.topic), str(tp.partition)).set(behind)
    host.consumer_lag = lag

"""The worker's pipeline host: owns this worker's pure pipeline, feeds it, publishes its outputs.

Inputs arrive from the input agents (positions and strategy stats, partitioned) and
from the replicated market feed: a consumer outside the consumer group that reads
every partition of ``mev.market.ticks``, so each worker holds the whole market state
(DESIGN.md: market state every portfolio needs is replicated to every worker). On
start the feed rewinds far enough in event time to refill the return windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.contracts import ContractError, validate_bytes
from streams import metrics
from streams.api.hub import notify_listeners
from streams.app import app
from streams.codecs import dumps
from streams.settings import get_settings
from streams.topics import MARKET_TICKS, contract_topic

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    """What the host needs of a pipeline: offer events, advance on idle, list outputs."""

    bar_ms: int

    def offer(
        self, topic: str, value: dict[str, Any], partition: int, wall_s: float | None
    ) -> list[tuple[str, str, dict[str, Any]]]: ...

    def expect(self, topic: str, partition: int, wall_s: float) -> None: ...

    def heartbeat(self, watermark_ms: int) -> list[tuple[str, str, dict[str, Any]]]: ...

    def poll(self, wall_s: float) -> list[tuple[str, str, dict[str, Any]]]: ...

    @property
    def watermark_ms(self) -> int: ...


class PipelineHost:
    """Serialises access to the pipeline (one asyncio lock) and sends what it emits."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self._lock = asyncio.Lock()
        self.last_input_wall: float = time.monotonic()
        self.last_event_ts_ms: int = 0
        self.publishers: dict[str, Any] = {}
        self.ready = asyncio.Event()
        """Set once recovery has replayed the inputs below the committed offsets."""
        self.heads: Any = None
        """``streams.recovery.OutputHeads``: what was published before this start."""
        self.suppressed = 0
        self.consumer_lag: dict[str, int] = {}
        """``topic[partition]`` -> messages the consumer group has not committed yet."""

    async def offer(self, topic: str, value: dict[str, Any], partition: int) -> None:
        self.last_input_wall = time.monotonic()
        self.last_event_ts_ms = max(self.last_event_ts_ms, int(value.get("ts_ms", 0)))
        if self.pipeline is None:
            return
        async with self._lock:
            outputs = self.pipeline.offer(topic, value, partition, self.last_input_wall)
        await self.publish(outputs)

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged by the broker (operator actions answer
        only after their alert events, controls and audit records are durable)."""
        await app.producer.flush()

    async def poll(self) -> None:
        """Let partitions that went idle stop holding the watermark back."""
        if self.pipeline is None:
            return
        async with self._lock:
            outputs = self.pipeline.poll(time.monotonic())
        await self.publish(outputs)

    async def heartbeat(self, idle_secs: float) -> None:
        """Advance the engine clock by the idle wall time when no input arrived for ``idle_secs``."""
        if self.pipeline is None:
            return
        idle = time.monotonic() - self.last_input_wall
        if idle < idle_secs or self.last_event_ts_ms == 0:
            return
        async with self._lock:
            outputs = self.pipeline.heartbeat(self.last_event_ts_ms + int(idle * 1000))
        await self.publish(outputs)

    async def publish(self, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
        sent = []
        for topic_name, key, value in outputs:
            if self.heads is not None and self.heads.already_published(topic_name, value):
                self.suppressed += 1
                continue
            topic = self.publishers[topic_name]
            await topic.send(key=key.encode(), value=dumps(value))
            sent.append((topic_name, key, value))
            metrics.OUTPUTS.labels(topic_name).inc()
            if topic_name == "risk.snapshots":
                metrics.observe_snapshot(value)
            elif topic_name == "risk.alerts":
                metrics.ALERT_EVENTS.labels(value["transition"], value["severity"]).inc()
        if sent:
            notify_listeners(sent)
        if self.pipeline is not None:
            metrics.WATERMARK_SECONDS.set(self.pipeline.watermark_ms / 1000)
            stats = self.pipeline.stats
            metrics.PIPELINE_EVENTS.labels("released").set(stats.released)
            metrics.PIPELINE_EVENTS.labels("late").set(stats.late)
            for topic, count in stats.late_by_topic.items():
                metrics.PIPELINE_EVENTS.labels(f"late:{topic}").set(count)
            metrics.PIPELINE_EVENTS.labels("stale_positions").set(stats.stale_positions)
            metrics.PIPELINE_EVENTS.labels("operator_replayed").set(stats.operator_replayed)
            metrics.PIPELINE_EVENTS.labels("operator_skipped").set(stats.operator_skipped)
            metrics.PIPELINE_EVENTS.labels("late_ticks").set(self.pipeline.risk.bars.late_ticks)


host = PipelineHost()


async def _rewind(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], keep: int) -> None:
    """Start each partition ``keep`` messages before its end (or at its beginning)."""
    begin = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, max(begin[tp], end[tp] - keep))


@app.task
async def recover_pipeline() -> None:
    """Replay the partitioned inputs below the committed offsets, then open the input agents."""
    from streams.recovery import bootstrap_inputs, read_output_heads, schedule_operator_actions

    settings = get_settings()
    started = time.monotonic()
    host.heads = await read_output_heads(settings.kafka_bootstrap_servers)
    if host.pipeline is not None and not host.heads.empty:
        await schedule_operator_actions(settings.kafka_bootstrap_servers, host.pipeline)
    replayed = await bootstrap_inputs(settings.kafka_bootstrap_servers, app.conf.id, host.offer)
    host.ready.set()
    log.warning(
        "recovery: replayed %d partitioned input records in %.1fs; output heads %s",
        replayed, time.monotonic() - started, host.heads.max_ts,
    )


@app.task
async def replicate_market_feed() -> None:
    """Read every partition of the ticks topic (no consumer group) into this worker's pipeline."""
    settings = get_settings()
    await host.ready.wait()  # recovered positions are buffered first, so the market cannot outrun them
    consumer = AIOKafkaConsumer(
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
        await _rewind(consumer, partitions, settings.market_replay_messages)
        if host.pipeline is not None:
            now = time.monotonic()
            for tp in partitions:
                host.pipeline.expect("mev.market.ticks", tp.partition, now)
            # partitions this worker may own: those it does not own fall idle and stop counting
            for topic in ("mev.positions", "mev.strategy.stats"):
                for partition in range(settings.topic_partitions):
                    host.pipeline.expect(topic, partition, now)
        async for message in consumer:
            try:
                tick = validate_bytes(contract_topic(MARKET_TICKS), message.value)
            except ContractError:
                continue  # screen_ticks DLQs it once per consumer group
            await host.offer("mev.market.ticks", tick, message.partition)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


@app.timer(interval=1.0)
async def idle_heartbeat() -> None:
    """Keep the event-time clock moving while the inputs are idle (DESIGN.md, Time)."""
    await host.poll()
    await host.heartbeat(get_settings().idle_heartbeat_secs)


@app.timer(interval=10.0)
async def measure_consumer_lag() -> None:
    """Committed offsets of this app's consumer group against the end of each input partition."""

    from streams.recovery import committed_offsets
    from streams.topics import POSITIONS, STRATEGY_STATS

    settings = get_settings()
    try:
        committed = await committed_offsets(settings.kafka_bootstrap_servers, app.conf.id)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
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

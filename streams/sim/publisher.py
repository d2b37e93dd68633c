"""Publish simulated or recorded events to Kafka (aiokafka), optionally paced in real time,
while following ``risk.controls`` so halted strategies stop opening positions.

The CLI (``mevrisk simulate`` / ``mevrisk replay``) parses its arguments and calls
:func:`run_simulation` or :func:`run_replay` with typed values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams import kafka_clients
from streams.sim.config import SimConfig
from streams.sim.errors import SimulatorError
from streams.sim.events import CONTROLS, Event
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident
from streams.sim.record import encode_line, read_events, replay_order

log = logging.getLogger(__name__)

Pace = Literal["realtime", "fast"]

#: Producer settings: durable (acks=all, idempotent), batched; requests large enough for
#: the deliberately oversized bad message (the broker/topic limit then decides its fate).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "max_batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
}
_DRAIN_EVERY = 2_000


@dataclass
class PublishStats:
    """What a run sent. `failed` counts messages the producer or broker refused."""

    sent: int = 0
    failed: int = 0
    bytes_sent: int = 0
    controls_applied: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0


def encode(ev: Event) -> tuple[bytes, bytes]:
    """(key, value) bytes for Kafka: UTF-8 key; orjson value, or the raw bytes as given."""
    value = ev.value if isinstance(ev.value, bytes) else orjson.dumps(ev.value)
    return ev.key.encode("utf-8"), value


class Pacer:
    """Maps event time to wall time relative to the first event, `speed` x faster.

    With ``epoch_offset`` (wall-clock seconds minus the loop clock) and real speed, a first event
    stamped within ``LIVE_WINDOW_S`` of the wall clock anchors event time to the wall clock itself:
    each event is sent when the wall clock reaches its ``ts_ms``, not that long after the first
    send, so a live run's delays behind event time are the consumer's, not the publisher's start-up.

    >>> p = Pacer(speed=2.0)
    >>> p.delay_s(1_000, now=10.0), round(p.delay_s(3_000, now=10.2), 6)
    (0.0, 0.8)
    >>> live = Pacer(epoch_offset=1_000.0)  # loop time 10.0 is wall time 1010.0 s
    >>> round(live.delay_s(1_012_000, now=10.0), 6)  # stamped 2 s ahead of the wall clock
    2.0
    """

    LIVE_WINDOW_S = 60.0

    def __init__(self, speed: float = 1.0, epoch_offset: float | None = None) -> None:
        if speed <= 0:
            raise SimulatorError("speed must be > 0")
        self.speed = speed
        self.epoch_offset = epoch_offset
        self._origin: tuple[float, int] | None = None

    def delay_s(self, ts_ms: int, now: float) -> float:
        if self._origin is None:
            self._origin = (now, ts_ms)
            if self.epoch_offset is not None and self.speed == 1.0 and \
                    abs(ts_ms / 1000 - (now + self.epoch_offset)) < self.LIVE_WINDOW_S:
                self._origin = (ts_ms / 1000 - self.epoch_offset, ts_ms)
        wall0, ts0 = self._origin
        return max(0.0, wall0 + (ts_ms - ts0) / 1000 / self.speed - now)


async def _follow_controls(bootstrap: str, topic: str, on_control: Callable[[dict], None],
                           ready: asyncio.Event, stats: PublishStats) -> None:
    """Read `topic` from the beginning (latest state per scope wins) and keep following it.

    `ready` is set once the records present at start-up have been applied (or at once when
    the topic does not exist).
    """
    consumer = kafka_clients.consumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            log.warning("controls topic %s not found; following it once it exists", topic)
            ready.set()
        consumer.subscribe([topic])
        end: dict[TopicPartition, int] | None = None
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for msg in msgs:
                    _apply(msg, on_control, stats)
            if ready.is_set() or not consumer.assignment():
                continue
            if end is None:
                end = await consumer.end_offsets(list(consumer.assignment()))
            if all([await consumer.position(tp) >= off for tp, off in end.items()]):
                ready.set()
    finally:
        ready.set()
        await consumer.stop()


def _apply(msg: Any, on_control: Callable[[dict], None], stats: PublishStats) -> None:
    where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
    try:
        if msg.value is None:  # tombstone: the scope's control was deleted
            control = {"scope": (msg.key or b"").decode(), "command": "RESUME"}
        else:
            control = orjson.loads(msg.value)
        if not isinstance(control, dict):
            raise SimulatorError("control is not a JSON object")
        on_control(control)
        stats.controls_applied += 1
        log.info("control %s applied: %s", where, control)
    except (SimulatorError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("control %s ignored: %s", where, exc)


async def _drain(pending: list[tuple[asyncio.Future, Event, int]], stats: PublishStats) -> None:
    results = await asyncio.gather(*(f for f, _, _ in pending), return_exceptions=True)
    for res, (_, ev, size) in zip(results, pending, strict=True):
        if isinstance(res, BaseException):
            stats.failed += 1
            log.warning("publish to %s (key %s, %d bytes) failed: %r", ev.topic, ev.key, size, res)
        else:
            stats.sent += 1
            stats.bytes_sent += size
            stats.by_topic[ev.topic] += 1
    pending.clear()


async def publish(events: Iterable[Event], bootstrap: str, pace: Pace = "fast", *,
                  speed: float = 1.0, controls_topic: str | None = None,
                  on_control: Callable[[dict], None] | None = None,
                  producer_config: Mapping[str, Any] | None = None) -> PublishStats:
    """Send `events` in order. With `controls_topic` and `on_control`, a background
    consumer feeds ``risk.controls`` to `on_control` (after catching up, at most 10 s)."""
    stats = PublishStats()
    started = time.monotonic()
    producer = kafka_clients.producer(bootstrap_servers=bootstrap,
                                **{**PRODUCER_DEFAULTS, **(producer_config or {})})
    follower: asyncio.Task | None = None
    await producer.start()
    try:
        if controls_topic and on_control:
            ready = asyncio.Event()
            follower = asyncio.create_task(
                _follow_controls(bootstrap, controls_topic, on_control, ready, stats))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 10.0)
        await _send_all(producer, events, pace, speed, stats)
        await producer.flush()
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await producer.stop()
        stats.wall_s = time.monotonic() - started
    return stats


async def _send_all(producer: AIOKafkaProducer, events: Iterable[Event], pace: Pace,
                    speed: float, stats: PublishStats) -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(speed, epoch_offset=time.time() - loop.time()) if pace == "realtime" else None
    pending: list[tuple[asyncio.Future, Event, int]] = []
    for n, ev in enumerate(events):
        if pacer is not None:
            delay = pacer.delay_s(ev.ts_ms, loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
        elif n % 500 == 0:
            await asyncio.sleep(0)  # let the controls follower run
        key, value = encode(ev)
        try:
            fut = await producer.send(ev.topic, value, key=key, timestamp_ms=ev.ts_ms)
        except KafkaError as exc:  # e.g. MessageSizeTooLargeError for the oversized probe
            stats.failed += 1
            log.warning("publish to %s (key %s, %d bytes) refused: %r",
                        ev.topic, ev.key, len(value), exc)
            continue
        pending.append((fut, ev, len(value)))
        if len(pending) >= _DRAIN_EVERY:
            await _drain(pending, stats)
    await _drain(pending, stats)


def _tee(events: Iterable[Event], fp: Any) -> Iterator[Event]:
    for ev in events:
        fp.write(encode_line(ev))
        yield ev


async def run_simulation(*, seed: int, rate_eps: float, duration_s: float | None,
                         incidents: Iterable[Incident] = (), bootstrap: str | None = None,
                         pace: Pace = "realtime", speed: float = 1.0,
                         start_ms: int | None = None, record_path: Path | None = None,
                         controls_topic: str | None = CONTROLS,
                         config: SimConfig | None = None, topic_prefix: str = "") -> PublishStats:
    """Simulate and publish to `bootstrap` and/or record to `record_path` (JSON lines).

    `topic_prefix` goes before each topic it publishes to (the recording keeps contract names).

    Without `bootstrap` nothing is published: the run only records, as fast as it can.
    `start_ms` defaults to the current wall clock (the only wall-clock read).
    """
    if bootstrap is None and record_path is None:
        raise SimulatorError("nothing to do: give a bootstrap server, a record path, or both")
    if start_ms is None:
        start_ms = time.time_ns() // 1_000_000
    sim = Simulator(seed, start_ms, rate_eps, duration_s, incidents, config)
    if bootstrap is None:
        if record_path is None:  # ruled out above
            raise SimulatorError("nothing to do: give a bootstrap server, a record path, or both")
        # ASYNC230: a record-only run has nothing else on its loop, and in a thread Ctrl-C would not stop it
        with open(record_path, "wb") as fp:  # noqa: ASYNC230
            n = sum(1 for _ in _tee(sim, fp))
        return PublishStats(sent=n)
    with contextlib.ExitStack() as stack:
        events: Iterable[Event] = sim
        if record_path is not None:
            # ASYNC230: opened once; the events are written to it (buffered) as they are published
            events = _tee(sim, stack.enter_context(open(record_path, "wb")))  # noqa: ASYNC230
        if topic_prefix:
            events = (ev._replace(topic=topic_prefix + ev.topic) for ev in events)
        return await publish(events, bootstrap, pace, speed=speed,
                             controls_topic=controls_topic, on_control=sim.apply_control)


async def run_replay(path: Path, bootstrap: str, pace: Pace = "fast",
                     speed: float = 1.0) -> PublishStats:
    """Publish a recorded file in event-time order (stable for equal times)."""
    return await publish(replay_order(read_events(path)), bootstrap, pace, speed=speed)

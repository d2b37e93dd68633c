"""The dispatcher: per-channel bounded queues and workers, retries, outcomes, metrics.

``await dispatcher.submit(event)`` routes an alert event (config routes, grouping,
digests, rate limits — :class:`~agents.notify.router.Router`), skips deliveries
the :class:`~agents.notify.ledger.DeliveryLedger` already finished, marks the rest
pending and queues their batches on their channel. Each channel has its own queue
and worker(s), so a slow or hanging peer only delays its own channel. Each attempt
runs under the channel's timeout; retryable failures back off exponentially with
seeded jitter up to ``max_attempts``.

Every attempt ends in an :class:`OutcomeRecord` passed to ``on_outcome`` and
counted in Prometheus: ``failed`` (an attempt failed, another follows),
``delivered`` or ``gave_up`` (final).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agents.notify.config import HTTP_TYPES, Backoff, ChannelConfig, NotifyConfig
from agents.notify.errors import DeliveryError
from agents.notify.ledger import DeliveryLedger
from agents.notify.model import AlertEvent, Batch, check_event
from agents.notify.router import Router
from agents.notify.transports import HttpTransport, SmtpTransport, Transport

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "failed", "gave_up"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "failed", "gave_up")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OnOutcome = Callable[["OutcomeRecord"], Awaitable[None] | None]


def backoff_delay(attempt: int, backoff: Backoff, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based).

    ``initial * multiplier**(attempt-1)`` capped at ``max_secs``, less a random
    fraction up to ``jitter`` so retries from many workers spread out.

    >>> b = Backoff(initial_secs=1, multiplier=2, max_secs=5, jitter=0)
    >>> [backoff_delay(n, b, random.Random(0)) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 5.0]
    """
    base = min(backoff.max_secs, backoff.initial_secs * backoff.multiplier ** (attempt - 1))
    return base * (1.0 - backoff.jitter * rng.random())


@dataclass(frozen=True)
class OutcomeRecord:
    """One delivery attempt's result, for ``risk.audit`` and the deliveries table."""

    channel: str
    channel_type: str
    outcome: Outcome
    attempt: int
    max_attempts: int
    batch_id: str  # the idempotency key sent to the peer
    kind: str  # single | group | digest
    event_ids: tuple[str, ...]
    alert_ids: tuple[str, ...]
    fingerprints: tuple[str, ...]
    severity: str
    status: str  # firing | resolved (of the batch)
    error: str | None
    status_code: int | None
    latency_secs: float
    retry_in_secs: float | None
    ts_ms: int  # wall-clock time of the record
    event_ts_ms: int  # latest event time among the events covered

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("event_ids", "alert_ids", "fingerprints"):
            out[key] = list(out[key])
        return out


class _Metrics:
    def __init__(self, registry: CollectorRegistry, channels: list[str]) -> None:
        self.outcomes = Counter(
            "mevrisk_notifications_total", "Notification delivery outcomes.",
            ["channel", "outcome"], registry=registry,
        )
        self.attempts = Counter(
            "mevrisk_notification_attempts_total", "Notification delivery attempts.",
            ["channel"], registry=registry,
        )
        self.latency = Histogram(
            "mevrisk_notification_latency_seconds", "Duration of one delivery attempt.",
            ["channel"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.queued = Gauge(
            "mevrisk_notification_queue_depth", "Batches waiting per channel.",
            ["channel"], registry=registry,
        )
        self.unroutable = Counter(
            "mevrisk_notifications_unroutable_total",
            "Events naming a channel that is not configured or is disabled.",
            ["reason"], registry=registry,
        )
        for name in channels:
            for outcome in OUTCOMES:
                self.outcomes.labels(name, outcome)
            self.attempts.labels(name)
            self.latency.labels(name)
            self.queued.labels(name)
        for reason in ("unknown_channel", "disabled_channel"):
            self.unroutable.labels(reason)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Dispatcher:
    """Delivers alert events to their channels; see the module docstring.

    Use as ``async with Dispatcher(config, registry=..., ledger=...) as d: await d.submit(ev)``
    or call :meth:`start` / :meth:`stop`. ``transports`` (by channel type), ``sleep``,
    ``seed`` and ``clock_ms`` are injectable for tests.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        registry: CollectorRegistry,
        ledger: DeliveryLedger | None = None,
        on_outcome: OnOutcome | None = None,
        session: aiohttp.ClientSession | None = None,
        transports: Mapping[str, Transport] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        seed: int = 0,
        clock_ms: Callable[[], int] = _wall_ms,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.router = Router(config)
        self.ledger = ledger if ledger is not None else DeliveryLedger({})
        self._on_outcome = on_outcome
        self._session = session
        self._own_session = session is None
        self._transports: dict[str, Transport] = dict(transports or {})
        self._sleep = sleep
        self._rng = random.Random(seed)  # noqa: S311 -- seeded retry jitter, not a secret
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._enabled = [n for n, c in config.channels.items() if c.enabled]
        self.metrics = _Metrics(registry, self._enabled)
        self._queues: dict[str, asyncio.Queue[Batch]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._started = False
        self._held: set[tuple[str, str]] = set()
        """``(event_id, channel)`` this process holds (grouping, queued or in flight) until final."""

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, resume: bool = True) -> None:
        """Open the HTTP session, start one worker set per channel, resume pending work."""
        if self._started:
            return
        self._started = True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        for kind in HTTP_TYPES:
            self._transports.setdefault(kind, HttpTransport(self.config, self._get_session, self._clock_ms))
        self._transports.setdefault("email", SmtpTransport(self.config))
        for name in self._enabled:
            channel = self.config.channels[name]
            self._queues[name] = asyncio.Queue(maxsize=channel.queue_size)
            for i in range(channel.concurrency):
                self._workers.append(
                    asyncio.create_task(self._worker(channel), name=f"notify-{name}-{i}")
                )
        if resume:
            await self.resume()

    async def stop(self) -> None:
        """Cancel the workers; unfinished deliveries stay pending in the ledger."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._held.clear()  # what was in flight stays pending in the ledger for the next resume()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._started = False

    async def drain(self) -> None:
        """Wait until every queued batch reached a final outcome."""
        await asyncio.gather(*(q.join() for q in self._queues.values()))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Dispatcher not started")
        return self._session

    # -- intake ----------------------------------------------------------------
    async def submit(self, event: AlertEvent) -> list[Batch]:
        """Route ``event`` and queue whatever is due; returns the batches queued.

        Raises :class:`~agents.notify.errors.InvalidAlertEvent` for an event
        delivery cannot handle (the caller dead-letters it). Never blocks on a peer.
        """
        check_event(event)
        decision = self.router.channels_for(event)
        for name in decision.unknown:
            await self._unroutable(event, name, "unknown_channel")
        if decision.disabled:  # switched off on purpose in channels.yaml: count, no alarm
            self.metrics.unroutable.labels("disabled_channel").inc(len(decision.disabled))
        event_id, fingerprint = str(event["event_id"]), str(event["fingerprint"])
        now = self._clock_ms()
        todo = []
        for name in decision.channels:
            # Done: never again. Pending: already queued or grouped, or resumed by
            # resume() after a restart, so a replayed event is not sent twice.
            if self.ledger.state(event_id, name, fingerprint=fingerprint) is not None:
                continue
            self.ledger.mark_pending(event_id, name, event, now_ms=now)
            self._held.add((event_id, name))
            todo.append(name)
        return await self._enqueue(self.router.ingest(event, todo))

    async def tick(self, now_ms: int) -> list[Batch]:
        """Advance event time (the watermark) and queue the groups and digests now due."""
        return await self._enqueue(self.router.tick(now_ms))

    async def resume(self) -> list[Batch]:
        """Re-queue deliveries the ledger holds as pending and this process does not hold yet.

        Called at start (after a restart) and again whenever a rebalance hands this worker
        ledger partitions (their pending entries were another worker's); deliveries already
        grouped, queued or in flight here are left alone, so calling it twice sends nothing twice.
        """
        by_batch: dict[tuple[str, str], list[AlertEvent]] = defaultdict(list)
        ungrouped: list[tuple[str, AlertEvent]] = []
        for pending in self.ledger.pending():
            if (pending.event_id, pending.channel) in self._held:
                continue
            if pending.channel not in self._queues:  # channel removed or disabled since
                self.ledger.mark_done(pending.event_id, pending.channel, "gave_up",
                                      attempts=pending.attempts, now_ms=self._clock_ms(),
                                      fingerprint=_fingerprint(pending.event))
                await self._unroutable(pending.event, pending.channel, "unknown_channel")
                continue
            if pending.batch_id:
                by_batch[(pending.channel, pending.batch_id)].append(pending.event)
            else:
                ungrouped.append((pending.channel, pending.event))
            self._held.add((pending.event_id, pending.channel))
        batches = [
            Batch.of(channel, events, kind=_kind_of(batch_id),
                     flush_ms=max(int(e["ts_ms"]) for e in events))
            for (channel, batch_id), events in by_batch.items()
        ]
        for channel, event in ungrouped:
            batches.extend(self.router.ingest(event, [channel]))
        if batches:
            log.info("resuming %d pending notification batches", len(batches))
        return await self._enqueue(batches)

    async def _enqueue(self, batches: list[Batch]) -> list[Batch]:
        queued = []
        now = self._clock_ms()
        for batch in batches:
            finished = [str(e["event_id"]) for e in batch.events if self.ledger.is_done(
                str(e["event_id"]), batch.channel, fingerprint=_fingerprint(e))]
            if finished:
                self._held.difference_update((event_id, batch.channel) for event_id in finished)
                batch = batch.without(finished)
            if not batch.events:
                continue
            for e in batch.events:
                self.ledger.set_batch(str(e["event_id"]), batch.channel, batch.batch_id,
                                      now_ms=now, fingerprint=_fingerprint(e))
            queue = self._queues.get(batch.channel)
            if queue is None:
                raise RuntimeError("Dispatcher not started")
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                channel = self.config.channels[batch.channel]
                error = DeliveryError(f"queue full ({channel.queue_size})", retryable=False)
                await self._finish(batch, channel, "gave_up", 0, error, 0.0, None)
                continue
            self.metrics.queued.labels(batch.channel).set(queue.qsize())
            queued.append(batch)
        return queued

    async def _unroutable(self, event: AlertEvent, name: str, reason: str) -> None:
        self.metrics.unroutable.labels(reason).inc()
        log.error("alert event %s names %s channel %r; not delivered",
                  event.get("event_id"), reason.split("_")[0], name)
        record = OutcomeRecord(
            channel=name, channel_type="unknown", outcome="gave_up", attempt=0, max_attempts=0,
            batch_id=str(event.get("event_id")), kind="single",
            event_ids=(str(event.get("event_id")),), alert_ids=(str(event.get("id")),),
            fingerprints=(str(event.get("fingerprint")),), severity=str(event.get("severity")),
            status=str(event.get("status")), error=reason, status_code=None,
            latency_secs=0.0, retry_in_secs=None, ts_ms=self._clock_ms(),
            event_ts_ms=int(event.get("ts_ms") or 0),
        )
        await self._emit(record)

    # -- delivery --------------------------------------------------------------
    async def _worker(self, channel: ChannelConfig) -> None:
        queue = self._queues[channel.name]
        while True:
            batch = await queue.get()
            try:
                await self._deliver(batch, channel)
            except Exception:  # a bug must not kill the channel's worker
                log.exception("notification worker %s failed on batch %s",
                              channel.name, batch.batch_id)
            finally:
                queue.task_done()
                self.metrics.queued.labels(channel.name).set(queue.qsize())

    async def _deliver(self, batch: Batch, channel: ChannelConfig) -> None:
        transport = self._transports[channel.type]
        done: set[int] = set()
        for attempt in range(1, channel.max_attempts + 1):
            started = self._monotonic()
            error = await self._attempt(transport, batch, channel, done)
            latency = self._monotonic() - started
            self.metrics.attempts.labels(channel.name).inc()
            self.metrics.latency.labels(channel.name).observe(latency)
            if error is None:
                await self._finish(batch, channel, "delivered", attempt, None, latency, None)
                return
            if not error.retryable or attempt == channel.max_attempts:
                await self._finish(batch, channel, "gave_up", attempt, error, latency, None)
                return
            delay = backoff_delay(attempt, channel.backoff, self._rng)
            if error.retry_after_secs is not None:
                delay = max(delay, min(error.retry_after_secs, channel.backoff.max_secs))
            await self._emit(self._record(batch, channel, "failed", attempt, error, latency, delay))
            await self._sleep(delay)

    async def _attempt(
        self, transport: Transport, batch: Batch, channel: ChannelConfig, done: set[int]
    ) -> DeliveryError | None:
        try:
            async with asyncio.timeout(channel.timeout_secs):
                await transport.deliver(batch, channel, done)
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"timeout after {channel.timeout_secs:g}s", retryable=True)
        except Exception as exc:  # a transport bug: report it, do not retry it
            log.exception("transport %s raised", channel.type)
            return DeliveryError(f"{type(exc).__name__}", retryable=False)
        return None

    async def _finish(
        self, batch: Batch, channel: ChannelConfig, outcome: Outcome, attempt: int,
        error: DeliveryError | None, latency: float, retry_in: float | None,
    ) -> None:
        now = self._clock_ms()
        state: Literal["delivered", "gave_up"] = "delivered" if outcome == "delivered" else "gave_up"
        for e in batch.events:
            self.ledger.mark_done(str(e["event_id"]), channel.name, state, attempts=attempt,
                                  now_ms=now, fingerprint=_fingerprint(e))
            self._held.discard((str(e["event_id"]), channel.name))
        if outcome == "gave_up":
            log.error("notification %s on %s gave up after %d attempt(s): %s",
                      batch.batch_id, channel.name, attempt, error.reason if error else "")
        await self._emit(self._record(batch, channel, outcome, attempt, error, latency, retry_in))

    def _record(
        self, batch: Batch, channel: ChannelConfig, outcome: Outcome, attempt: int,
        error: DeliveryError | None, latency: float, retry_in: float | None,
    ) -> OutcomeRecord:
        alerts = batch.alerts
        return OutcomeRecord(
            channel=channel.name, channel_type=channel.type, outcome=outcome, attempt=attempt,
            max_attempts=channel.max_attempts, batch_id=batch.batch_id, kind=batch.kind,
            event_ids=batch.event_ids, alert_ids=tuple(str(a["id"]) for a in alerts),
            fingerprints=tuple(str(a["fingerprint"]) for a in alerts),
            severity=batch.max_severity, status=batch.status,
            error=error.reason if error else None,
            status_code=error.status_code if error else None,
            latency_secs=latency, retry_in_secs=retry_in, ts_ms=self._clock_ms(),
            event_ts_ms=max(int(e["ts_ms"]) for e in batch.events),
        )

    async def _emit(self, record: OutcomeRecord) -> None:
        if record.channel in self._queues:
            self.metrics.outcomes.labels(record.channel, record.outcome).inc()
        if self._on_outcome is None:
            return
        try:
            result = self._on_outcome(record)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_outcome callback failed for %s", record.batch_id)


def _kind_of(batch_id: str) -> Literal["single", "group", "digest"]:
    if batch_id.startswith("digest-"):
        return "digest"
    if batch_id.startswith("group-"):
        return "group"
    return "single"


def _fingerprint(event: AlertEvent) -> str | None:
    value = event.get("fingerprint")
    return None if value is None else str(value)

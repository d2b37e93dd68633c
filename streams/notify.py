"""Thin wiring: ``risk.alerts`` -> the notification dispatcher, with a changelogged delivery ledger.

The last stage of the data path (``streams`` package docstring). The dispatcher, router,
ledger and transports are the pure core in :mod:`agents.notify`; this module holds only
their Faust side (agent, table, tasks, timer).

The ledger table is keyed by the alert fingerprint's raw bytes (``key_type=bytes``,
``use_partitioner=True``) so each entry's changelog lands in the partition of its
``risk.alerts`` record: the worker that owns an alert owns its delivery state, a restarted
worker resumes pending deliveries and skips completed ones, and a worker that a rebalance
hands partitions resumes their pending deliveries once the table recovered them.
Delivery outcomes go to ``risk.audit`` on this worker's ``notify@host:port`` chain.

The dispatcher starts as soon as recovery is done (:func:`resume_deliveries`), not on the
first alert: after a restart the alerts behind pending deliveries are usually committed
already, so no alert may come to wake it while the ledger holds work to resume.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from agents.audit.chain import AuditChain
from agents.audit.trust import sign
from agents.notify import DeliveryLedger, Dispatcher, InvalidAlertEvent, OutcomeRecord, load_config
from agents.notify.ledger import Utf8Keys
from streams import logsafe, metrics
from streams.app import app
from streams.codecs import dumps
from streams.host import host
from streams.sending import send_unless_stopping
from streams.settings import get_settings
from streams.supervision import supervised
from streams.topics import alerts_topic, audit_topic

log = logging.getLogger(__name__)

fingerprint_to_deliveries = app.Table(
    "fingerprint_to_deliveries", default=None, partitions=get_settings().topic_partitions,
    use_partitioner=True, key_type=bytes,  # raw fingerprint bytes: the partition of its alert
)
_dispatcher: Dispatcher | None = None
_notify_audit: AuditChain | None = None
_starting = asyncio.Lock()


async def _record_outcome(record: OutcomeRecord) -> None:
    if _notify_audit is None:  # set before the dispatcher that calls this starts
        raise RuntimeError("a delivery outcome arrived before the notify audit chain was set")
    entry = _notify_audit.append("delivery", record.to_dict(), record.event_ts_ms or record.ts_ms)
    if host.audit_key is not None:
        entry = sign(entry, host.audit_key)
    if not await send_unless_stopping(audit_topic, b"notify", dumps(entry)):
        log.warning("producer closed while shutting down; delivery record %s not audited", entry["seq"])
        return
    metrics.OUTPUTS.labels("risk.audit").inc()


def notify_chain(web_host: str, web_port: int) -> str:
    """This worker's audit chain of delivery outcomes, ``notify@host:port``: outcomes are facts
    recorded once (never replayed), so each worker keeps its own chain and continues it after
    a restart; workers never write to one chain together."""
    return f"notify@{web_host}:{web_port}"


async def dispatcher() -> Dispatcher:
    """The worker's dispatcher, started (and pending deliveries resumed) on first use."""
    global _dispatcher
    if _dispatcher is None:
        async with _starting:  # one dispatcher; published only once start() resumed the ledger
            if _dispatcher is None:
                _dispatcher = await _start_dispatcher()
    return _dispatcher


async def _start_dispatcher() -> Dispatcher:
    global _notify_audit
    settings = get_settings()
    chain = notify_chain(settings.web_host, settings.web_port)
    last = host.heads.audit_last.get(chain) if host.heads is not None else None
    _notify_audit = AuditChain.restore(chain, last)
    config = load_config(settings.channels_file or settings.config_dir / "channels.yaml")
    logsafe.register_secrets(v for c in config.channels.values() for v in c.secret_values())
    started = Dispatcher(
        config, registry=metrics.REGISTRY,
        ledger=DeliveryLedger(Utf8Keys(fingerprint_to_deliveries), by_fingerprint=True),
        on_outcome=_record_outcome,
    )
    await started.start()
    return started


@app.task
async def resume_deliveries() -> None:
    """Start the dispatcher once the ledger is restored, so pending deliveries resume now."""
    await host.ready.wait()  # app tasks start after table recovery; this waits for the audit heads
    await dispatcher()


@fingerprint_to_deliveries.on_recover
async def resume_assigned_deliveries() -> None:
    """After every rebalance's table recovery: resume the pending deliveries of partitions this
    worker was just handed (a dead or departed worker's); what it holds already is skipped."""
    if _dispatcher is not None:  # not started yet: its start() resumes the whole ledger
        await _dispatcher.resume()


@app.agent(alerts_topic)
@supervised("deliver_alerts")
async def deliver_alerts(stream: Any) -> None:
    """Hand every alert event to the dispatcher; it never waits on a peer."""
    await host.ready.wait()  # the notify audit chain continues from the recovered head
    async for event in stream.events():
        message = event.message
        try:
            value = orjson.loads(event.value) if event.value is not None else None
            if not isinstance(value, dict):
                raise InvalidAlertEvent(f"not a JSON object ({type(value).__name__})")
            await (await dispatcher()).submit(value)
        except (orjson.JSONDecodeError, InvalidAlertEvent) as error:
            log.warning("undeliverable alert event %s[%d]@%d: %s",
                        message.topic, message.partition, message.offset, error)
        except Exception as error:  # isolation: one odd alert record never stops deliveries
            metrics.PROCESSING_ERRORS.labels("notify").inc()
            log.error("alert event %s[%d]@%d not delivered (%s: %s)",
                      message.topic, message.partition, message.offset, type(error).__name__, error)


@app.timer(interval=1.0)
async def flush_notification_groups() -> None:
    """Send groups and digests that are due on the engine's event-time clock."""
    if _dispatcher is not None and host.pipeline is not None and host.pipeline.watermark_ms:
        await _dispatcher.tick(host.pipeline.watermark_ms)


@app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's SignalHandlerT matches no handler under mypy
async def stop_dispatcher(sender: Any, **_: Any) -> None:
    """Stop the channel workers and close the HTTP session while the producer still runs;
    deliveries cut short stay pending in the ledger and resume on the next start."""
    if _dispatcher is not None:
        await _dispatcher.stop()


"""Notification delivery: webhook, Slack, email, SMS, PagerDuty and Alertmanager.

Pure parts: :mod:`.config` (channels.yaml), :mod:`.router` (routing, grouping,
digests, rate limits on event time), :mod:`.payloads` (request bodies). I/O:
:mod:`.transports` (aiohttp, aiosmtplib) and :mod:`.delivery` (the dispatcher).
The Faust wiring lives in :mod:`streams.notify`; nothing here imports Faust.
"""

from agents.notify.config import NotifyConfig, load_config, parse_config
from agents.notify.delivery import Dispatcher, OutcomeRecord, backoff_delay
from agents.notify.errors import DeliveryError, InvalidAlertEvent, NotifyConfigError, NotifyError
from agents.notify.ledger import DeliveryLedger, ledger_key
from agents.notify.model import Batch
from agents.notify.router import Router

__all__ = [
    "Batch",
    "DeliveryError",
    "DeliveryLedger",
    "Dispatcher",
    "InvalidAlertEvent",
    "NotifyConfig",
    "NotifyConfigError",
    "NotifyError",
    "OutcomeRecord",
    "Router",
    "backoff_delay",
    "ledger_key",
    "load_config",
    "parse_config",
]

"""The one Faust application (``faust -A streams.app``). Agents register on import."""

from __future__ import annotations

import logging
import warnings

import faust
from faust.exceptions import AlreadyConfiguredWarning
from faust.utils.terminal import SpinnerHandler

import streams.codecs  # noqa: F401 - registers the orjson codec before any record is used
from streams import logsafe
from streams.kafka_clients import faust_credentials
from streams.membership import instance_id, leave_on_close
from streams.settings import get_settings

_settings = get_settings()
logsafe.install()  # no secret or Authorization header in any log line of this process
logsafe.register_secrets(secret.get_secret_value() for secret in
                         (_settings.checkpoint_secret, _settings.kafka_sasl_password) if secret is not None)

app = faust.App(
    _settings.app_id,
    broker=f"kafka://{_settings.kafka_bootstrap_servers}",
    broker_credentials=faust_credentials(_settings),  # None: PLAINTEXT (MEVRISK_KAFKA_* unset)
    store="memory://",
    datadir=str(_settings.data_dir),
    topic_partitions=_settings.topic_partitions,
    topic_replication_factor=_settings.topic_replication,
    topic_allow_declare=True,
    web_host=_settings.web_host,
    web_bind=_settings.web_bind or _settings.web_host,  # Faust's own default would be 0.0.0.0
    web_port=_settings.web_port,
    web_in_thread=False,
    # Faust's own views stay off: /router/ lists every worker's URL and /table/ reads table data
    # (positions, delivery ledger) without auth; /graph and the stats index follow `debug`, off too.
    # The engine routes between workers itself (streams.api), never through @table_route.
    web_router_enabled=False,
    web_tables_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
    producer_max_request_size=2_097_152,
    consumer_max_fetch_size=4_194_304,
    table_cleanup_interval=30.0,
    broker_commit_every=500,
    # a killed worker is evicted from the group after 10 s, so a restart or a peer takes over quickly
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,  # a survivor learns within 1 s that a dead peer was evicted
    broker_rebalance_timeout=20.0,
    broker_commit_interval=1.0,
)


@app.on_worker_init.connect  # type: ignore[arg-type]  # mode's SignalHandlerT matches no handler under mypy
def _static_membership(sender: faust.App, **_: object) -> None:
    """Once the worker command has set the web port, name this worker's group membership."""
    if sender.conf.consumer_group_instance_id is None:
        with warnings.catch_warnings():  # Faust warns on any setting assigned after the app read its conf
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            sender.conf.consumer_group_instance_id = instance_id(_settings.worker_id, sender.conf.web_port)
    if sender.conf.consumer_group_instance_id is not None:
        leave_on_close()


@app.task
async def _root_logger_at_worker_level() -> None:
    """Faust's start-up spinner sets the root logger to DEBUG (so that it spins on every record) and
    never puts it back: every debug call of aiokafka and Faust then built a log record and masked it
    (``streams.logsafe``), 18 % of a catching-up worker's CPU (py-spy). Once started, the root logger
    goes back to the level of the worker's own handler (``-l``)."""
    root = logging.getLogger()
    levels = [h.level for h in root.handlers if not isinstance(h, SpinnerHandler) and h.level]
    root.setLevel(min(levels) if levels else logging.WARNING)

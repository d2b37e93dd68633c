"""Typed settings of the worker, parsed once from ``MEVRISK_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything the worker reads from its environment. Durations carry their unit in the name."""

    model_config = SettingsConfigDict(env_prefix="MEVRISK_", frozen=True, extra="ignore")

    app_id: str = "mevrisk"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    """How every Kafka client of this process connects (``streams.kafka_clients``); default:
    ``SASL_PLAINTEXT`` when ``kafka_sasl_username`` is set, else ``PLAINTEXT``. ``SASL_SSL`` for a
    real cluster (TLS, verified against ``kafka_ssl_cafile`` or the system's CAs)."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    """The Kafka principal (``User:<name>``) of this process: the worker's, a bot's or an admin's."""
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    """CA bundle (PEM) that signs the brokers' certificates under ``SASL_SSL``; default: system CAs."""
    topic_prefix: str = ""
    """Prepended to every topic name; tests use it for fresh topics per test. Empty in production."""
    topic_partitions: int = 4
    topic_replication: int = 1
    web_host: str = "127.0.0.1"
    """Host name other workers and clients reach this worker's web server by."""
    web_bind: str | None = None
    """Address the web server listens on; default: ``web_host`` (loopback unless configured)."""
    web_port: int = 6066
    worker_id: str | None = None
    """This worker's consumer-group ``group.instance.id`` (static membership, ``streams.membership``);
    default ``<host>:<web port>``; ``dynamic`` turns static membership off."""
    data_dir: Path = REPO_ROOT / ".cache" / "worker"
    config_dir: Path = REPO_ROOT / "deploy" / "config"
    channels_file: Path | None = None
    """Notification channels (default: config_dir/channels.yaml)."""
    bar_ms: int | None = None
    """Bar interval in ms of event time; None: deploy/config/risk.yaml (60000). The demo uses 1000."""
    market_replay_messages: int = 250_000
    """Ticks per partition the replicated market feed re-reads at start to refill return windows."""
    allowed_lateness_ms: int = 50
    """Event-time ms the watermark stays behind the slowest input partition that holds it: covers
    records reordered in flight (a producer's batches to several partitions); a later record is
    applied at once and counted late (never dropped)."""
    idle_heartbeat_secs: float = 5.0
    """Wall seconds without any input before the idle heartbeat advances the event-time clock."""
    idle_source_secs: float = 5.0
    """Wall seconds after which a silent input partition stops holding the watermark back."""
    head_idle_ms: int = 50
    """Wall ms after which a silent input partition whose reader is at its end (nothing left to
    read at the last fetch) stops holding the watermark back; 0: off (only ``idle_source_secs``)."""
    snapshot_coalesce_ms: int = 250
    """Event-time ms between coalesced snapshots of the portfolios that changed (positions, or a
    price tick of an asset they hold) between bars."""
    refresh_on_price: bool = True
    """A price tick makes the portfolios holding the asset due for a snapshot at the next coalescing
    boundary (False: only position changes and bar ends do)."""
    peer_watch_secs: float = 0.5
    """Seconds between probes of the group's other workers (``streams.peer_watch``): a peer whose web
    port refuses connections on two probes in a row is dead, and is removed from the consumer group at
    once instead of after the session timeout; 0: off."""
    standby_replicas: int = 0
    """1 or more: every worker keeps a warm in-memory copy of every partition's latest state checkpoint
    (follows ``risk.state``), so a takeover restores without reading the topic; 0: read at recovery."""
    model_checkpoint_secs: float = 300.0
    """Seconds of event time between checkpoints of the online models to ``risk.models``; 0: none."""
    model_restore: bool = True
    """Restore the online models from ``risk.models`` at start (false: they start cold)."""
    checkpoint_secret: SecretStr | None = None
    """Key of the HMAC-SHA256 tag on every checkpoint (at least 16 bytes, the same on every worker).
    Unset: no checkpoint is written or restored (the models start cold after a restart)."""
    state_checkpoint_secs: float = Field(
        default=60.0,
        validation_alias=AliasChoices("MEVRISK_STATE_CHECKPOINT_SECS", "MEVRISK_CHECKPOINT_SECS"))
    """Seconds of event time between state checkpoints to ``risk.state`` (``streams.state_store``;
    also read from ``MEVRISK_CHECKPOINT_SECS``); 0: off (restart recovery replays every retained input).
    On only with ``checkpoint_secret``; when on, recovery restores the newest checkpoint and replays
    only the inputs after it, a worker holds only the partitions it owns, and the model checkpoints on
    ``risk.models`` are not written or read (the state checkpoint holds the models)."""
    snapshots_retention_ms: int | None = None
    """Broker ``retention.ms`` of ``risk.snapshots`` set by ``mevrisk topics create``; None: the broker's
    default (7 days); -1: forever. Daily reports of older days come from ``risk.reports``."""
    report_archive: bool = True
    """Archive each day's report per portfolio to ``risk.reports`` when the day closes in event time."""
    worker_log_level: str = "warn"
    max_future_skew_ms: int = 300_000
    """Input events more than this far ahead of the wall clock go to ``risk.dlq`` (out_of_range)."""
    max_portfolios: int = 100
    """Distinct portfolios tracked; events of more go to ``risk.dlq`` (too_many_entities)."""
    max_strategies: int = 200
    max_assets: int = 512
    """Distinct assets admitted from ticks and positions; more go to ``risk.dlq`` (unknown_asset)."""
    fault_inject: str | None = None
    """Test-only: the name of an input agent that raises on its first message (a real agent crash,
    outside the pipeline's isolation), to prove that supervision and the tests notice it; or
    ``hole:<agent>``: that agent drops ``HOLE_RECORDS`` records of a partition unacknowledged, once
    (as Faust can around a rebalance), to prove that ``streams.continuity`` fills the hole."""

    @field_validator("checkpoint_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("MEVRISK_CHECKPOINT_SECRET must be at least 16 bytes")
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        """A SASL protocol needs both a user name and a password; credentials need a SASL protocol."""
        protocol = self.kafka_protocol
        has_user = self.kafka_sasl_username is not None
        if protocol.startswith("SASL_") and not (has_user and self.kafka_sasl_password is not None):
            raise ValueError(f"MEVRISK_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                             "MEVRISK_KAFKA_SASL_USERNAME and MEVRISK_KAFKA_SASL_PASSWORD")
        if protocol == "PLAINTEXT" and has_user:
            raise ValueError("MEVRISK_KAFKA_SASL_USERNAME is set but MEVRISK_KAFKA_SECURITY_PROTOCOL="
                             "PLAINTEXT would send no credentials; use SASL_PLAINTEXT or SASL_SSL")
        return self

    @property
    def kafka_protocol(self) -> str:
        """The effective security protocol (see ``kafka_security_protocol``)."""
        if self.kafka_security_protocol is not None:
            return self.kafka_security_protocol
        return "SASL_PLAINTEXT" if self.kafka_sasl_username is not None else "PLAINTEXT"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

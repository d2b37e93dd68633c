"""Topic names (part of the contract, DESIGN.md) and their Faust topic objects."""

from __future__ import annotations

from dataclasses import dataclass

from streams.app import app
from streams.settings import get_settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name and broker-side configuration."""

    name: str
    compacted: bool = False
    infinite_retention: bool = False
    partitions: int | None = None  # None: the settings' default
    max_message_bytes: int = 2_097_152
    segment_bytes: int | None = None
    """Roll segments at this size (compaction never touches the active segment)."""
    retention_ms: int | None = None
    """Broker ``retention.ms``; None: the broker's default (7 days unless configured)."""

    def config(self) -> dict[str, str]:
        # Retention and segment rolling count from arrival at the broker. Event time lives in the
        # payload's ts_ms; a replay of old events (record timestamps months back) must not make
        # the broker delete the inputs that crash recovery and takeover re-read.
        config = {"max.message.bytes": str(self.max_message_bytes), "message.timestamp.type": "LogAppendTime"}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        if self.segment_bytes is not None:
            config["segment.bytes"] = str(self.segment_bytes)
            config["min.cleanable.dirty.ratio"] = "0.1"
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        if self.infinite_retention:
            config["retention.ms"] = "-1"
            config["retention.bytes"] = "-1"
        return config


_settings = get_settings()
_prefix = _settings.topic_prefix

MARKET_TICKS = f"{_prefix}mev.market.ticks"
POSITIONS = f"{_prefix}mev.positions"
STRATEGY_STATS = f"{_prefix}mev.strategy.stats"
SNAPSHOTS = f"{_prefix}risk.snapshots"
ALERTS = f"{_prefix}risk.alerts"
CONTROLS = f"{_prefix}risk.controls"
AUDIT = f"{_prefix}risk.audit"
DLQ = f"{_prefix}risk.dlq"
MODELS = f"{_prefix}risk.models"
STATE = f"{_prefix}risk.state"
REPORTS = f"{_prefix}risk.reports"
STATE_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""A state checkpoint blob is ~2 MB with models; larger ones are skipped with a warning."""

TOPIC_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(MARKET_TICKS),
    TopicSpec(POSITIONS),
    TopicSpec(STRATEGY_STATS),
    TopicSpec(SNAPSHOTS, retention_ms=_settings.snapshots_retention_ms),
    TopicSpec(ALERTS),
    TopicSpec(CONTROLS, compacted=True),
    TopicSpec(AUDIT, infinite_retention=True, partitions=1),
    TopicSpec(DLQ),
    TopicSpec(MODELS, compacted=True),  # model checkpoints: zlib'd pickles, ~300 kB per portfolio
    # streams.state_store; small segments so compaction keeps what recovery reads near two sets per key
    TopicSpec(STATE, compacted=True, max_message_bytes=STATE_MAX_MESSAGE_BYTES,
              segment_bytes=64 * 1024 * 1024),
    # each day's report per portfolio, key date|portfolio (agents.reports.archive): reports for days
    # older than the snapshots' retention
    TopicSpec(REPORTS, compacted=True, infinite_retention=True),
)
INPUT_TOPICS = (MARKET_TICKS, POSITIONS, STRATEGY_STATS)


def contract_topic(topic: str) -> str:
    """The contract name of a (possibly prefixed) topic, e.g. ``t1.mev.positions`` -> ``mev.positions``."""
    return topic[len(_prefix):] if _prefix and topic.startswith(_prefix) else topic


def _topic(spec: TopicSpec):
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or _settings.topic_partitions,
        replicas=_settings.topic_replication,
        config=spec.config(),
        compacting=spec.compacted,
        retention=None,
    )


market_ticks_topic = _topic(TOPIC_SPECS[0])
positions_topic = _topic(TOPIC_SPECS[1])
strategy_stats_topic = _topic(TOPIC_SPECS[2])
snapshots_topic = _topic(TOPIC_SPECS[3])
alerts_topic = _topic(TOPIC_SPECS[4])
controls_topic = _topic(TOPIC_SPECS[5])
audit_topic = _topic(TOPIC_SPECS[6])
dlq_topic = _topic(TOPIC_SPECS[7])
models_topic = _topic(TOPIC_SPECS[8])
reports_topic = _topic(TOPIC_SPECS[10])

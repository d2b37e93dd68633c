"""Prometheus metrics of the worker (``mevrisk_`` namespace, base units, label values made at start)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from schemas.contracts import DLQ_REASONS

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter(
    "mevrisk_events_in_total", "Input messages accepted, by topic.", ["topic"], registry=REGISTRY
)
DLQ_MESSAGES = Counter(
    "mevrisk_dlq_messages_total", "Input messages rejected to risk.dlq, by reason.", ["reason"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "mevrisk_processing_seconds", "Wall time to validate and process one input message.", ["topic"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
    registry=REGISTRY,
)
EVENT_LAG_SECONDS = Gauge(
    "mevrisk_event_lag_seconds", "Wall clock minus event time of the last accepted message.", ["topic"],
    registry=REGISTRY,
)
WATERMARK_SECONDS = Gauge(
    "mevrisk_watermark_seconds", "The engine clock: event-time watermark, Unix seconds.", registry=REGISTRY
)
PIPELINE_EVENTS = Gauge(
    "mevrisk_pipeline_events", "Pipeline counters: released, late, stale_positions, buffered.", ["kind"],
    registry=REGISTRY,
)
OUTPUTS = Counter(
    "mevrisk_outputs_total", "Records published to output topics, by topic.", ["topic"], registry=REGISTRY
)

for _topic in ("mev.market.ticks", "mev.positions", "mev.strategy.stats"):
    EVENTS_IN.labels(_topic)
    PROCESSING_SECONDS.labels(_topic)
for _reason in DLQ_REASONS:
    DLQ_MESSAGES.labels(_reason)
for _topic in ("risk.snapshots", "risk.alerts", "risk.controls", "risk.audit", "risk.dlq"):
    OUTPUTS.labels(_topic)

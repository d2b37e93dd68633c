"""Prometheus metrics of the worker (``mevrisk_`` namespace, base units, label values made at start)."""

from __future__ import annotations

import contextlib

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
INPUT_HOLES = Counter(
    "mevrisk_input_holes_total",
    "Holes in a partition's input records left by the Faust consumer (streams.continuity), by topic; "
    "how: filled (read from the broker before the next record), declared (the pipeline held them; "
    "Faust told so its commits go on)",
    ["topic", "how"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "mevrisk_consumer_lag_messages", "Input messages not yet committed by this app's consumer group.",
    ["topic", "partition"], registry=REGISTRY,
)
UNTRUSTED_RECORDS = Counter(
    "mevrisk_untrusted_records_total",
    "Records read back from the engine's own output topics and not acted on, by topic and reason: "
    "malformed, forged (audit tag does not verify), unsigned (no worker secret to authenticate it), "
    "unlinked (does not continue its audit chain).",
    ["topic", "reason"], registry=REGISTRY,
)
for _reason in ("malformed", "forged", "unsigned", "unlinked"):
    UNTRUSTED_RECORDS.labels("risk.audit", _reason)
for _topic in ("risk.snapshots", "risk.alerts", "risk.controls"):
    UNTRUSTED_RECORDS.labels(_topic, "malformed")
OUTPUTS = Counter(
    "mevrisk_outputs_total", "Records published to output topics, by topic.", ["topic"], registry=REGISTRY
)

PORTFOLIO_VAR_USD = Gauge(
    "mevrisk_portfolio_var_usd", "Historical VaR of the latest snapshot, USD (positive = loss).",
    ["portfolio", "confidence"], registry=REGISTRY,
)
PORTFOLIO_ES_USD = Gauge(
    "mevrisk_portfolio_es_usd", "Expected shortfall of the latest snapshot, USD (positive = loss).",
    ["portfolio", "confidence"], registry=REGISTRY,
)
PORTFOLIO_EXPOSURE_USD = Gauge(
    "mevrisk_portfolio_exposure_usd", "Exposure of the latest snapshot, USD.", ["portfolio", "measure"],
    registry=REGISTRY,
)
PORTFOLIO_CONCENTRATION = Gauge(
    "mevrisk_portfolio_max_concentration_ratio", "Largest asset share of gross exposure (0-1).",
    ["portfolio"], registry=REGISTRY,
)
PORTFOLIO_RATING = Gauge(
    "mevrisk_portfolio_rating", "Risk rating: 0 LOW, 1 MEDIUM, 2 HIGH, 3 CRITICAL.", ["portfolio"],
    registry=REGISTRY,
)
PORTFOLIO_ANOMALY_SCORE = Gauge(
    "mevrisk_portfolio_anomaly_score", "Online portfolio-state anomaly score (0-1, higher = riskier).",
    ["portfolio"], registry=REGISTRY,
)
PORTFOLIO_ALERT_PROBABILITY = Gauge(
    "mevrisk_portfolio_alert_probability", "P(high or critical alert within the horizon).",
    ["portfolio"], registry=REGISTRY,
)
TICK_ANOMALY_SCORE = Gauge(
    "mevrisk_tick_anomaly_score",
    "Latest online tick anomaly score (0-1, flagged at 0.5) of an asset (price, liquidity) or chain (gas) "
    "scored within the last minute of event time; from the snapshots' market.tick_anomaly.",
    ["asset"], registry=REGISTRY,
)
ALERT_EVENTS = Counter(
    "mevrisk_alert_events_total", "Alert lifecycle events published, by transition and severity.",
    ["transition", "severity"], registry=REGISTRY,
)
RATING_LEVELS = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}


_PORTFOLIO_SERIES = (
    (PORTFOLIO_VAR_USD, ("0.95", "0.99")), (PORTFOLIO_ES_USD, ("0.95", "0.99", "0.975")),
    (PORTFOLIO_EXPOSURE_USD, ("gross", "net")), (PORTFOLIO_CONCENTRATION, ()), (PORTFOLIO_RATING, ()),
    (PORTFOLIO_ANOMALY_SCORE, ()), (PORTFOLIO_ALERT_PROBABILITY, ()),
)
_exported: set[str] = set()
_tick_assets: set[str] = set()


def forget_portfolios(keep: set[str]) -> list[str]:
    """Drop the headline series of every exported portfolio not in ``keep`` (one this worker no
    longer owns after a rebalance), so Prometheus does not read its last figures forever."""
    gone = sorted(_exported - keep)
    for portfolio in gone:
        for gauge, second in _PORTFOLIO_SERIES:
            series: list[tuple[str, ...]] = [(portfolio, x) for x in second] or [(portfolio,)]
            for labels in series:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
    _exported.difference_update(gone)
    return gone


DLQ_SEND_FAILURES = Counter(
    "mevrisk_dlq_send_failures_total", "Dead letters the broker refused (logged; the agent goes on).",
    registry=REGISTRY,
)
PROCESSING_ERRORS = Counter(
    "mevrisk_processing_errors_total",
    "Events or computations that raised and were isolated (event to risk.dlq, entity marked errored).",
    ["stage"], registry=REGISTRY,
)
COMPONENT_UP = Gauge(
    "mevrisk_component_up", "1 while a worker component (agent or task) runs; 0 once it crashed.",
    ["component"], registry=REGISTRY,
)


def observe_snapshot(snapshot: dict) -> None:
    """Export a snapshot's headline figures (none for a snapshot whose computation failed)."""
    portfolio = snapshot["portfolio"]
    if "var_95_usd" not in snapshot:
        return
    _exported.add(portfolio)
    for confidence, suffix in (("0.95", "95"), ("0.99", "99")):
        PORTFOLIO_VAR_USD.labels(portfolio, confidence).set(snapshot[f"var_{suffix}_usd"])
        PORTFOLIO_ES_USD.labels(portfolio, confidence).set(snapshot[f"es_{suffix}_usd"])
    PORTFOLIO_ES_USD.labels(portfolio, "0.975").set(snapshot["es_975_usd"])
    PORTFOLIO_EXPOSURE_USD.labels(portfolio, "gross").set(snapshot["total_exposure_usd"])
    PORTFOLIO_EXPOSURE_USD.labels(portfolio, "net").set(snapshot["net_exposure_usd"])
    PORTFOLIO_CONCENTRATION.labels(portfolio).set(snapshot["max_concentration"])
    PORTFOLIO_RATING.labels(portfolio).set(RATING_LEVELS.get(snapshot["rating"], -1))
    anomaly = snapshot.get("anomaly")
    if anomaly:
        PORTFOLIO_ANOMALY_SCORE.labels(portfolio).set(anomaly["portfolio_score"])
        PORTFOLIO_ALERT_PROBABILITY.labels(portfolio).set(anomaly["alert_probability"])
    market = snapshot.get("market")
    if isinstance(market, dict) and isinstance(market.get("tick_anomaly"), dict):
        observe_tick_anomaly(market["tick_anomaly"])


def observe_tick_anomaly(scores: dict) -> None:
    """Export the market block's recent tick anomaly scores (the same in every snapshot of a bar);
    an asset that left it (quiet for a minute, or evicted) loses its series. Bounded by the assets
    the engine admits (``agents.admission``) and the tick detector's key cap (``max_keys``)."""
    for asset in sorted(_tick_assets - scores.keys()):
        with contextlib.suppress(KeyError):
            TICK_ANOMALY_SCORE.remove(asset)
    for asset, score in scores.items():
        TICK_ANOMALY_SCORE.labels(str(asset)).set(float(score))
    _tick_assets.clear()
    _tick_assets.update(str(a) for a in scores)


for _transition in ("firing", "repeat", "escalated", "acknowledged", "silenced", "resolved"):
    for _severity in ("info", "warning", "high", "critical"):
        ALERT_EVENTS.labels(_transition, _severity)
for _topic in ("mev.market.ticks", "mev.positions", "mev.strategy.stats"):
    EVENTS_IN.labels(_topic)
    PROCESSING_SECONDS.labels(_topic)
for _reason in DLQ_REASONS:
    DLQ_MESSAGES.labels(_reason)
PROCESSING_STAGES = ("tick", "position", "strategy_stats", "operator", "bar", "snapshot", "models",
                     "strategy_health", "alerts", "notify")
"""Where an isolated processing error happened (bounded label values)."""
for _stage in PROCESSING_STAGES:
    PROCESSING_ERRORS.labels(_stage)
for _topic in ("risk.snapshots", "risk.alerts", "risk.controls", "risk.audit", "risk.dlq", "risk.reports"):
    OUTPUTS.labels(_topic)

"""Faust records for every topic of DESIGN.md.

Input records are built from dictionaries that ``schemas.contracts.validate`` has
already checked, so their fields carry the same names, units and meaning. Output
records are what downstream consumers read; they serialise with the orjson codec
and carry no Faust metadata, so any JSON client can read them.
"""

from __future__ import annotations

from typing import Any

import faust

_RECORD_OPTIONS: dict[str, Any] = {"serializer": "orjson", "include_metadata": False}


class MarketTick(faust.Record, **_RECORD_OPTIONS):
    """``mev.market.ticks``: a price, gas or liquidity observation at event time ``ts_ms``."""

    kind: str
    source: str
    ts_ms: int
    asset: str | None = None
    price_usd: float | None = None
    chain: str | None = None
    base_fee_gwei: float | None = None
    priority_fee_gwei: float | None = None
    pool: str | None = None
    depth_usd: float | None = None
    spread_bps: float | None = None
    volume_usd: float | None = None


class PositionLeg(faust.Record, **_RECORD_OPTIONS):
    """One asset leg of a multi-asset position; ``quantity`` signed (positive long)."""

    asset: str
    quantity: float
    notional_usd: float


class PositionEvent(faust.Record, **_RECORD_OPTIONS):
    """``mev.positions``: open / update / close of a position, idempotent by (position_id, seq)."""

    position_id: str
    seq: int
    action: str
    portfolio: str
    strategy: str
    kind: str
    chain: str
    protocol: str
    asset: str
    quantity: float
    notional_usd: float
    entry_price_usd: float
    ts_ms: int
    legs: list[PositionLeg] | None = None


class StrategyStats(faust.Record, **_RECORD_OPTIONS):
    """``mev.strategy.stats``: one interval of a strategy's bundle and P&L statistics (USD)."""

    strategy: str
    portfolio: str
    chain: str
    ts_ms: int
    interval_ms: int
    bundles_submitted: int
    bundles_included: int
    bundles_reverted: int
    gas_spent_usd: float
    gross_pnl_usd: float
    net_pnl_usd: float


class RiskSnapshot(faust.Record, **_RECORD_OPTIONS):
    """``risk.snapshots``: a portfolio's risk at event time ``ts_ms``; VaR/ES are positive losses in USD."""

    portfolio: str
    ts_ms: int
    total_exposure_usd: float
    net_exposure_usd: float
    active_positions: int
    var_95_usd: float
    var_99_usd: float
    es_95_usd: float
    es_975_usd: float
    es_99_usd: float
    max_concentration: float
    rating: str
    figures: dict[str, Any]


class AlertEvent(faust.Record, **_RECORD_OPTIONS):
    """``risk.alerts``: one alert lifecycle transition, Alertmanager-compatible."""

    event_id: str
    id: str
    fingerprint: str
    rule: str
    transition: str
    status: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str
    endsAt: str
    ts_ms: int
    escalation_level: int = 0
    values: dict[str, Any] | None = None


class Control(faust.Record, **_RECORD_OPTIONS):
    """``risk.controls`` (compacted, keyed by scope): HALT / REDUCE / RESUME with reason and actor."""

    control_id: str
    scope: str
    command: str
    reason: str
    actor: str
    ts_ms: int


class AuditRecord(faust.Record, **_RECORD_OPTIONS):
    """``risk.audit``: append-only record; ``hash`` = sha256 over the record with ``prev_hash``."""

    stream: str
    seq: int
    kind: str
    ts_ms: int
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class DeadLetter(faust.Record, **_RECORD_OPTIONS):
    """``risk.dlq``: a rejected input message with its reason and original bytes (base64)."""

    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    key_b64: str | None
    value_b64: str
    received_ts_ms: int
    value_size: int = 0
    """Size in bytes of the original value; ``value_b64`` keeps at most its first 64 KiB."""
    value_sha256: str = ""
    """sha256 (hex) of the whole original value."""
    truncated: bool = False
    entity: str | None = None
    """The portfolio, strategy or asset concerned (``processing_error`` and admission records)."""
    error_type: str | None = None
    """Exception type of a ``processing_error``."""


INPUT_RECORDS: dict[str, type[faust.Record]] = {
    "mev.market.ticks": MarketTick,
    "mev.positions": PositionEvent,
    "mev.strategy.stats": StrategyStats,
}

"""The simulator's output unit and the topic names it writes to."""

from __future__ import annotations

from typing import Any, NamedTuple

TICKS = "mev.market.ticks"
POSITIONS = "mev.positions"
STATS = "mev.strategy.stats"
CONTROLS = "risk.controls"


class Event(NamedTuple):
    """One message to publish: a wire-contract dict, or raw bytes (deliberately bad input).

    `ts_ms` is the event time; for dict values it equals ``value["ts_ms"]``.
    """

    topic: str
    key: str
    value: dict[str, Any] | bytes
    ts_ms: int

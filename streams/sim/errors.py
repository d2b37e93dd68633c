"""Exceptions raised by the simulator."""

from __future__ import annotations

from agents.errors import MevRiskError


class SimulatorError(MevRiskError, ValueError):
    """A bad simulator input: unknown incident, malformed spec, bad control, bad record line."""

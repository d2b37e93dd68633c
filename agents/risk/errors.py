"""Exceptions raised by the risk core."""

from __future__ import annotations

from agents.errors import MevRiskError


class RiskError(MevRiskError):
    """Root of the risk package's exceptions."""


class RiskInputError(RiskError, ValueError):
    """Input the risk core cannot use (bad record, unknown asset, bad CSV...).

    The message is meant for people: it says what was wrong and where.
    """


class RiskConfigError(RiskError, ValueError):
    """An invalid ``risk.yaml`` / ``scenarios.yaml`` configuration."""

"""Errors of the report core."""

from __future__ import annotations

from agents.errors import MevRiskError


class ReportError(MevRiskError):
    """A report that cannot be built: bad date, unknown format, unknown portfolio."""

"""Exceptions raised by the alerting core."""

from __future__ import annotations

from agents.errors import MevRiskError


class AlertsError(MevRiskError):
    """Root of the alerting package's exceptions."""


class RuleError(AlertsError, ValueError):
    """An invalid rules file or rule; the message names the file, the rule and the problem."""


class AlertNotFoundError(AlertsError, KeyError):
    """No active alert has that fingerprint or alert id (the API answers 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "alert not found"


class ControlError(AlertsError, ValueError):
    """An invalid kill-switch command (unknown scope or command)."""

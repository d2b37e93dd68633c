"""Errors raised by the online-ML core (all under the project root ``MevRiskError``)."""

from agents.errors import MevRiskError


class AnomalyError(MevRiskError):
    """Root of every error raised by ``agents.anomaly``."""


class InvalidFeatureInput(AnomalyError, ValueError):
    """An input record cannot be turned into model features (missing or invalid field).

    The agent sends the record to ``risk.dlq`` with ``str(error)`` as the reason.
    """


class ModelStateError(AnomalyError):
    """Checkpointed model state cannot be restored (corrupt, foreign or wrong version)."""

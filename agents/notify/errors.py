"""Errors raised by the notification core, all under :class:`MevRiskError`."""

from __future__ import annotations

from agents.errors import MevRiskError


class NotifyError(MevRiskError):
    """Root of the notification package's errors."""


class NotifyConfigError(NotifyError):
    """``channels.yaml`` or its environment is invalid (names the field, never a secret)."""


class InvalidAlertEvent(NotifyError):
    """An event from ``risk.alerts`` lacks what delivery needs (dead-letter it with this reason)."""


class DeliveryError(NotifyError):
    """One delivery attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = True,
        status_code: int | None = None,
        retry_after_secs: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_secs = retry_after_secs

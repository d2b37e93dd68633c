"""Async transports: aiohttp for the HTTP channels, aiosmtplib for email.

A transport makes the calls of one delivery attempt and raises
:class:`~agents.notify.errors.DeliveryError` (``retryable`` or not) on failure.
Calls that already succeeded inside a multi-request delivery (one SMS per
recipient, one PagerDuty event per alert) are remembered in ``done`` so a retry
does not repeat them. Error texts carry a status code or an exception class name,
never a URL (a Slack webhook URL is itself a credential) nor a header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import aiohttp
import aiosmtplib

from agents.notify.config import ChannelConfig, NotifyConfig
from agents.notify.errors import DeliveryError
from agents.notify.model import Batch
from agents.notify.payloads import email_message, http_requests

_RETRYABLE_STATUS = frozenset({408, 425, 429})
_BODY_SNIPPET = 200


class Transport(Protocol):
    async def deliver(self, batch: Batch, channel: ChannelConfig, done: set[int]) -> None:
        """Send ``batch`` on ``channel``; skip and extend ``done`` (request indexes)."""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP-date; the backoff schedule applies instead


class HttpTransport:
    """POSTs the requests :func:`~agents.notify.payloads.http_requests` builds."""

    def __init__(self, config: NotifyConfig, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._config = config
        self._session = session

    async def deliver(self, batch: Batch, channel: ChannelConfig, done: set[int]) -> None:
        for index, request in enumerate(http_requests(batch, channel, self._config)):
            if index in done:
                continue
            headers = {"Content-Type": request.content_type, **request.headers}
            try:
                async with self._session().request(
                    request.method, request.url, data=request.body, headers=headers,
                    allow_redirects=False,
                ) as resp:
                    if 200 <= resp.status < 300:
                        done.add(index)
                        continue
                    snippet = (await resp.text(errors="replace"))[:_BODY_SNIPPET]
                    raise DeliveryError(
                        f"HTTP {resp.status}: {snippet}".strip(),
                        retryable=resp.status >= 500 or resp.status in _RETRYABLE_STATUS,
                        status_code=resp.status,
                        retry_after_secs=_retry_after(resp.headers.get("Retry-After")),
                    )
            except aiohttp.ClientError as exc:
                raise DeliveryError(f"{type(exc).__name__}", retryable=True) from exc
            except OSError as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc.strerror}") from exc


class SmtpTransport:
    """Sends one plain-text + HTML message to the channel's recipients."""

    def __init__(self, config: NotifyConfig) -> None:
        self._config = config

    async def deliver(self, batch: Batch, channel: ChannelConfig, done: set[int]) -> None:
        if 0 in done:
            return
        message = email_message(batch, channel, self._config)
        try:
            await aiosmtplib.send(
                message,
                hostname=channel.host,
                port=channel.smtp_port,
                username=channel.username,
                password=channel.password.get_secret_value() if channel.password else None,
                use_tls=channel.security == "tls",
                start_tls=channel.security == "starttls",
                validate_certs=channel.validate_certs,
                timeout=channel.timeout_secs,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("SMTP recipients refused", retryable=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message[:_BODY_SNIPPET]}",
                retryable=exc.code < 500, status_code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}", retryable=True) from exc
        done.add(0)

"""Async transports: aiohttp for the HTTP channels, aiosmtplib for email.

A transport makes the calls of one delivery attempt and raises
:class:`~agents.notify.errors.DeliveryError` (``retryable`` or not) on failure.
Calls that already succeeded inside a multi-request delivery (one SMS per
recipient, one PagerDuty event per alert) are remembered in ``done`` so a retry
does not repeat them. Error texts carry a status code or an exception class name,
never a URL (a Slack webhook URL is itself a credential) nor a header; the peer's
answer quoted in them has the channel's credentials masked
(:meth:`~agents.notify.config.ChannelConfig.mask`), since a peer may echo a request.

>>> retry_after_secs("120", now_ms=0), retry_after_secs("soon", now_ms=0)
(120.0, None)
>>> retry_after_secs("Wed, 21 Oct 2015 07:28:30 GMT", now_ms=1_445_412_480_000)
30.0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
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


def retry_after_secs(value: str | None, *, now_ms: int) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 10.2.3): delay-seconds, or an
    HTTP-date taken against ``now_ms`` (wall clock, ms; a date in the past means 0).
    None when absent or unreadable (the backoff schedule applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone: HTTP-dates are GMT
        return None
    return max(0.0, when.timestamp() - now_ms / 1000.0)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HttpTransport:
    """POSTs the requests :func:`~agents.notify.payloads.http_requests` builds.

    ``clock_ms`` (wall clock, ms) dates the webhook signature and reads date-form
    ``Retry-After`` headers.
    """

    def __init__(self, config: NotifyConfig, session: Callable[[], aiohttp.ClientSession],
                 clock_ms: Callable[[], int] = _wall_ms) -> None:
        self._config = config
        self._session = session
        self._clock_ms = clock_ms

    async def deliver(self, batch: Batch, channel: ChannelConfig, done: set[int]) -> None:
        now_secs = self._clock_ms() // 1000
        for index, request in enumerate(http_requests(batch, channel, self._config,
                                                      now_secs=now_secs)):
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
                    snippet = channel.mask((await resp.text(errors="replace"))[:4096])[:_BODY_SNIPPET]
                    raise DeliveryError(
                        f"HTTP {resp.status}: {snippet}".strip(),
                        retryable=resp.status >= 500 or resp.status in _RETRYABLE_STATUS,
                        status_code=resp.status,
                        retry_after_secs=retry_after_secs(resp.headers.get("Retry-After"),
                                                          now_ms=self._clock_ms()),
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
                f"SMTP {exc.code}: {channel.mask(exc.message)[:_BODY_SNIPPET]}",
                retryable=exc.code < 500, status_code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}", retryable=True) from exc
        done.add(0)

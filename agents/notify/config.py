"""Typed, frozen notification config parsed from ``deploy/config/channels.yaml``.

This module is the edge: it reads the YAML file and the environment variables the
file names (``secret_env``, ``url_env``, ``password_env``, ``auth_token_env``,
``routing_key_env``) once, and hands back a frozen :class:`NotifyConfig`. Secrets
are held as :class:`pydantic.SecretStr`; ``repr``/``str`` of the config never show
them, and error messages name the variable, never its value.

A channel that carries credentials (a signing secret, basic auth, a bearer or other
token, a Slack webhook URL, an SMTP password) must not send them in clear: an
``http://`` URL (or email with ``security: none``) is refused unless the channel
says ``allow_insecure: true``.

>>> cfg = parse_config({"channels": {"hook": {"type": "webhook", "url": "http://x/h"}}}, {})
>>> cfg.channels["hook"].type, cfg.channels["hook"].max_attempts
('webhook', 5)
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agents.notify.errors import NotifyConfigError

ChannelType = Literal["webhook", "slack", "email", "sms", "pagerduty", "alertmanager"]
Severity = Literal["info", "warning", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "high", "critical")
TRANSITIONS: tuple[str, ...] = (
    "firing",
    "repeat",
    "escalated",
    "acknowledged",
    "silenced",
    "resolved",
)
HTTP_TYPES = frozenset({"webhook", "slack", "sms", "pagerduty", "alertmanager"})
# These peers group and de-duplicate by themselves: one event per request.
_UNGROUPED_TYPES = frozenset({"pagerduty", "alertmanager"})
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Header names whose values are credentials (case-insensitive substring match).
_CREDENTIAL_HEADER_RE = re.compile(r"auth|token|secret|api[-_]?key|password|cookie", re.I)
_MIN_MASKED_LEN = 4  # shorter values would mask ordinary words

# Which env-var field fills which secret/value field, per channel.
_ENV_FIELDS: dict[str, str] = {
    "secret_env": "secret",
    "password_env": "password",
    "auth_token_env": "auth_token",
    "routing_key_env": "routing_key",
    "url_env": "url",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Backoff(_Frozen):
    """Exponential backoff: ``initial_secs * multiplier**(n-1)``, capped, with jitter."""

    initial_secs: float = Field(default=1.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_secs: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.2, ge=0, le=1)  # fraction of the delay drawn at random


class ChannelConfig(_Frozen):
    """One delivery channel; type-specific fields are checked by :meth:`_check_type`."""

    name: str
    type: ChannelType
    enabled: bool = True
    # webhook, slack, pagerduty; kept out of repr: a Slack webhook URL is a credential
    url: str | None = Field(default=None, repr=False)
    base_url: str | None = None  # sms provider, alertmanager
    timeout_secs: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff: Backoff = Backoff()
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    queue_size: int = Field(default=1000, ge=1)
    concurrency: int = Field(default=1, ge=1, le=64)
    grouping: bool = True  # False: one notification per event (PagerDuty, Alertmanager)
    headers: dict[str, str] = Field(default_factory=dict)
    # secrets (filled from the environment variables the YAML names)
    secret: SecretStr | None = None  # webhook HMAC secret
    password: SecretStr | None = None  # SMTP password
    auth_token: SecretStr | None = None  # SMS provider auth token
    routing_key: SecretStr | None = None  # PagerDuty integration key
    # email
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    validate_certs: bool = True
    username: str | None = None
    from_addr: str | None = None
    to: tuple[str, ...] = ()
    # sms
    account_sid: str | None = None
    from_number: str | None = None
    # pagerduty / alertmanager
    source: str = "mev-risk-stream"
    # accept sending this channel's credentials in clear (http://, SMTP without TLS)
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _check_type(self) -> ChannelConfig:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"channel name {self.name!r} must match {_NAME_RE.pattern}")
        required: dict[str, tuple[str, ...]] = {
            "webhook": ("url",),
            "slack": ("url",),
            "email": ("host", "from_addr", "to"),
            "sms": ("base_url", "account_sid", "auth_token", "from_number", "to"),
            "pagerduty": ("url", "routing_key"),
            "alertmanager": ("base_url",),
        }
        if not self.enabled:
            return self
        missing = [f for f in required[self.type] if not getattr(self, f)]
        if missing:
            raise ValueError(f"channel {self.name!r} ({self.type}) needs {', '.join(missing)}")
        self._check_transport_security()
        return self

    def credentials(self) -> list[str]:
        """What credentials this channel sends, by kind (empty: none)."""
        kinds = []
        if self.type == "slack":
            kinds.append("a Slack webhook URL")
        if self.secret is not None:
            kinds.append("a signing secret")
        if self.auth_token is not None:
            kinds.append("basic auth (SMS token)")
        if self.routing_key is not None:
            kinds.append("a PagerDuty routing key")
        if self.password is not None:
            kinds.append("an SMTP password")
        if any(_CREDENTIAL_HEADER_RE.search(h) for h in self.headers):
            kinds.append("credential headers")
        if any(urlsplit(u).password for u in (self.url, self.base_url) if u):
            kinds.append("basic auth in the URL")
        return kinds

    def _check_transport_security(self) -> None:
        """Refuse credentials over plain http:// (or SMTP without TLS) unless ``allow_insecure``."""
        carried = self.credentials()
        if self.allow_insecure or not carried:
            return
        if self.type == "email":
            insecure = self.security == "none"
            how = "over SMTP without TLS (security: none); use starttls or tls"
        else:
            insecure = any(urlsplit(u).scheme.lower() == "http"
                           for u in (self.url, self.base_url) if u)
            how = "over plain http://; use an https:// URL"
        if insecure:  # never the URL itself: it may be the credential
            raise ValueError(
                f"channel {self.name!r} ({self.type}) would send {', '.join(carried)} {how}, "
                "or set `allow_insecure: true` on the channel to accept that (e.g. a loopback peer)"
            )

    def secret_values(self) -> list[str]:
        """Every credential string of this channel as it may appear in text (for masking)."""
        values = [v.get_secret_value() for v in
                  (self.secret, self.password, self.auth_token, self.routing_key) if v is not None]
        if self.type == "slack" and self.url:  # the URL, and its path alone, are the credential
            values += [self.url, urlsplit(self.url).path]
        if self.auth_token is not None and self.account_sid:
            pair = f"{self.account_sid}:{self.auth_token.get_secret_value()}"
            values.append(base64.b64encode(pair.encode()).decode())
        values += [v for h, v in self.headers.items() if _CREDENTIAL_HEADER_RE.search(h)]
        values += [p for u in (self.url, self.base_url) if u and (p := urlsplit(u).password)]
        return sorted({v for v in values if len(v) >= _MIN_MASKED_LEN}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every credential of this channel replaced by ``***``.

        >>> ch = ChannelConfig(name="h", type="webhook", url="https://x/h", secret="s3cret-value")
        >>> ch.mask("peer said: bad signature for s3cret-value")
        'peer said: bad signature for ***'
        """
        for value in self.secret_values():
            text = text.replace(value, "***")
        return text

    @property
    def smtp_port(self) -> int:
        """The configured port, else 465 for implicit TLS, 587 for STARTTLS, 25 otherwise."""
        if self.port:
            return self.port
        return {"tls": 465, "starttls": 587, "none": 25}[self.security]


class Route(_Frozen):
    """Adds ``channels`` to every event whose labels and severity match."""

    match: dict[str, str] = Field(default_factory=dict)  # label (or rule/rule_name) == value
    severities: tuple[Severity, ...] = ()  # empty = any
    transitions: tuple[str, ...] = ()  # empty = any
    channels: tuple[str, ...]


class Grouping(_Frozen):
    """Alertmanager-style grouping, driven by event time."""

    group_by: tuple[str, ...] = ("alertname", "portfolio")
    group_wait_secs: float = Field(default=30.0, ge=0)
    group_interval_secs: float = Field(default=300.0, ge=0)


class Digest(_Frozen):
    """Repeated low-severity alerts are collected and sent once per ``interval_secs``."""

    enabled: bool = True
    severities: tuple[Severity, ...] = ("info", "warning")
    transitions: tuple[str, ...] = ("repeat",)
    interval_secs: float = Field(default=3600.0, gt=0)


class NotifyConfig(_Frozen):
    """Everything the notification core needs; built by :func:`load_config`."""

    dashboard_url: str = "http://127.0.0.1:6066/dashboard"
    channels: dict[str, ChannelConfig]
    routes: tuple[Route, ...] = ()
    grouping: Grouping = Grouping()
    digest: Digest = Digest()

    @model_validator(mode="after")
    def _check_routes(self) -> NotifyConfig:
        for route in self.routes:
            unknown = [c for c in route.channels if c not in self.channels]
            if unknown:
                raise ValueError(f"route {route.match} names unknown channels {unknown}")
        return self


def _resolve_env(name: str, raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Replace every ``*_env`` key by the value of the environment variable it names.

    ``enabled: auto`` turns the channel on only when every variable it names is
    set; with ``enabled: true`` (the default) a missing variable is an error.
    """
    out = dict(raw)
    enabled = out.get("enabled", True)
    if enabled not in (True, False, "auto"):
        raise NotifyConfigError(f"channel {name!r}: enabled must be true, false or auto")
    missing: list[str] = []
    for env_key, field in _ENV_FIELDS.items():
        if env_key not in out:
            continue
        var = out.pop(env_key)
        if not isinstance(var, str) or not var:
            raise NotifyConfigError(f"channel {name!r}: {env_key} must name a variable")
        value = environ.get(var)
        if value:
            out[field] = value
        else:
            missing.append(var)
    if enabled == "auto":
        out["enabled"] = not missing
    elif missing and enabled:
        raise NotifyConfigError(
            f"channel {name!r}: environment variable(s) {', '.join(missing)} not set; "
            "set them, or mark the channel `enabled: false` or `enabled: auto`"
        )
    if out.get("type") in _UNGROUPED_TYPES:
        out.setdefault("grouping", False)
    if out.get("type") == "pagerduty":
        out.setdefault("url", PAGERDUTY_EVENTS_URL)
    return out


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str]) -> NotifyConfig:
    """Validate an already-loaded YAML mapping; ``defaults`` apply to every channel."""
    if not isinstance(data, Mapping):
        raise NotifyConfigError("channels config must be a mapping")
    body = dict(data)
    defaults = dict(body.pop("defaults", None) or {})
    channels: dict[str, Any] = {}
    for name, raw in (body.pop("channels", None) or {}).items():
        if not isinstance(raw, Mapping):
            raise NotifyConfigError(f"channel {name!r} must be a mapping")
        merged = {**defaults, **_resolve_env(str(name), dict(raw), environ), "name": str(name)}
        channels[str(name)] = merged
    try:
        return NotifyConfig.model_validate({**body, "channels": channels})
    except ValidationError as exc:
        # pydantic may echo the input; list only the location and the message.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise NotifyConfigError(f"invalid channels config: {problems}") from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read ``channels.yaml``; secrets come from ``environ`` (default: the process env)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise NotifyConfigError(f"cannot read {path}: {exc}") from exc
    return parse_config(data or {}, os.environ if environ is None else environ)

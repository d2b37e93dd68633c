"""Settings of the REST API and dashboard, parsed once from ``MEVRISK_API_*`` variables.

Tokens come from ``MEVRISK_API_TOKENS`` (JSON ``{"<token>": "<role>"}`` or
``{"<token>": {"role": "<role>", "name": "<actor>"}}``) and/or the YAML/JSON file named
by ``MEVRISK_API_TOKENS_FILE`` (same shape, optionally under a ``tokens:`` key). Roles:
``viewer`` (reads), ``operator`` (acknowledge, resolve, silence), ``admin`` (controls,
rule reload). With no token configured, reads are open and every mutation is refused.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """The API's knobs; durations and sizes carry their unit in the name (STYLE 5)."""

    model_config = SettingsConfigDict(env_prefix="MEVRISK_API_", frozen=True, extra="ignore")

    tokens: SecretStr = Field(default=SecretStr(""))
    """JSON object token -> role (or -> {role, name}); a secret, never logged."""
    tokens_file: Path | None = None
    anonymous_reads: bool = False
    """Serve reads without a token even when tokens are configured (the original API had no
    auth; the demo turns this on). Changes always need an operator or admin token."""
    rate_per_sec: float = 20.0
    """Token-bucket refill rate per token (anonymous callers: per client address)."""
    rate_burst: int = 60
    max_body_bytes: int = 65_536
    max_stream_clients: int = 64
    """Live event streams open on this worker, all callers together."""
    max_streams_per_caller: int = 4
    """Live event streams one caller (token; anonymous: client address) may hold open at once."""
    stream_keepalive_secs: float = 15.0
    rules_path: Path | None = None
    """Rules file ``POST rules/reload`` reads; None: ``<MEVRISK_CONFIG_DIR>/rules.yaml``."""
    allow_open_reads: bool = False
    """Start even though anyone who reaches a non-loopback bind may read without a token (no tokens
    configured, or ``anonymous_reads``); off: such a worker refuses to start."""
    peer_secret: SecretStr = Field(default=SecretStr(""),
                                   validation_alias=AliasChoices("MEVRISK_PEER_SECRET", "peer_secret"))
    """``MEVRISK_PEER_SECRET`` (16+ bytes, the same on every worker): signs requests one worker
    passes on to another (``streams.api.peer_auth``). Unset: nothing is forwarded."""
    metrics_token: SecretStr = Field(default=SecretStr(""),
                                     validation_alias=AliasChoices("MEVRISK_METRICS_TOKEN", "metrics_token"))
    """``MEVRISK_METRICS_TOKEN``: bearer token ``/metrics`` asks for; unset: ``/metrics`` is open."""
    allowed_hosts: str = Field(default="", validation_alias=AliasChoices("MEVRISK_ALLOWED_HOSTS",
                                                                         "allowed_hosts"))
    """``MEVRISK_ALLOWED_HOSTS``: comma-separated host names the ``Host`` header may carry besides
    the loopback names, the bind address and ``MEVRISK_WEB_HOST`` (DNS rebinding guard); ``*``: any."""
    replicate_snapshots: bool = True
    """Read every partition of ``risk.snapshots`` (no consumer group) so any worker answers
    for any portfolio and the event stream carries every portfolio."""


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()

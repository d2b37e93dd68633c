"""The Faust record of ``risk.dlq`` (:class:`DeadLetter`), built by ``streams.dlq``.

It serialises with the orjson codec and carries no Faust metadata, so any JSON client can
read it. The input topics need no records: their messages are checked by
``schemas.contracts`` and handed on as dictionaries, and the other outputs are dictionaries too.
"""

from __future__ import annotations

from typing import Any

import faust

_RECORD_OPTIONS: dict[str, Any] = {"serializer": "orjson", "include_metadata": False}


class DeadLetter(faust.Record, **_RECORD_OPTIONS):
    """``risk.dlq``: a rejected input message with its reason and original bytes (base64)."""

    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    key_b64: str | None
    value_b64: str
    received_ts_ms: int
    value_size: int = 0
    """Size in bytes of the original value; ``value_b64`` keeps at most its first 64 KiB."""
    value_sha256: str = ""
    """sha256 (hex) of the whole original value."""
    truncated: bool = False
    entity: str | None = None
    """The portfolio, strategy or asset concerned (``processing_error`` and admission records)."""
    error_type: str | None = None
    """Exception type of a ``processing_error``."""

"""Errors of the checkpoint package: one type, with the reason a checkpoint was refused."""

from __future__ import annotations

from typing import Literal

from agents.errors import MevRiskError

Reason = Literal["forged", "malformed", "oversized", "version", "inconsistent", "incompatible", "secret"]
REASONS: tuple[Reason, ...] = (
    "forged", "malformed", "oversized", "version", "inconsistent", "incompatible", "secret")
"""Bounded values, usable as a Prometheus label (``reason``) created at start-up."""


class CheckpointError(MevRiskError):
    """A checkpoint that is refused (or cannot be sealed), and why.

    ``reason``: ``forged`` (HMAC tag does not verify: not written with this worker secret),
    ``malformed`` (not a checkpoint, truncated, bad header/body, wrong key), ``oversized``
    (blob or declared/decompressed body over the cap), ``version`` (another format version),
    ``inconsistent`` (blobs of one restore taken at different event times), ``incompatible``
    (taken with another ``bar_ms`` or return window size), ``secret`` (no usable secret).
    ``key`` is the checkpoint key concerned (``market``, ``p<N>``), when known.
    """

    def __init__(self, reason: Reason, detail: str, key: str | None = None) -> None:
        where = f" {key!r}" if key is not None else ""
        super().__init__(f"checkpoint{where} refused ({reason}): {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.key = key

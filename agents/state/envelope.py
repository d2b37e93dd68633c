"""The sealed envelope of one checkpoint blob: header, zlib body, HMAC-SHA256 tag.

Layout (big-endian)::

    magic  b"MEVRSTAT"              8 bytes
    version                         uint16   FORMAT_VERSION
    as_of_ms                        int64    the pipeline's clock when taken (-1: none yet)
    key length                      uint16
    raw length                      uint32   size of the body once decompressed
    body length                     uint32   size of the compressed body
    key                             utf-8    ``market`` or ``p<N>``: the blob names its own key
    body                            zlib(orjson(document))
    tag                             32 bytes HMAC-SHA256(secret, everything above)

:func:`open_blob` never interprets a byte it has not authenticated: after the total size cap and
the magic, the tag is verified (``hmac.compare_digest``) before the version, the lengths, the
decompression (capped at :data:`MAX_RAW_BYTES`, checked against the declared raw length) and the
JSON parse. Anything wrong raises :class:`~agents.state.errors.CheckpointError` with a reason.
The body may carry pickles of online models (see :mod:`agents.state.codec`): they are only
unpickled after this function returned, so never from unauthenticated bytes.

>>> secret = b"0123456789abcdef-test"
>>> blob = seal("p3", 1_000, {"hello": [1, 2]}, secret)
>>> header, doc = open_blob(blob, secret, expected_key="p3")
>>> (header.key, header.as_of_ms, doc)
('p3', 1000, {'hello': [1, 2]})
>>> open_blob(blob, b"another-secret-of-16+", expected_key="p3")
Traceback (most recent call last):
...
agents.state.errors.CheckpointError: checkpoint 'p3' refused (forged): HMAC tag does not verify \
(not written with this worker secret, or altered)
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agents.state.errors import CheckpointError

MAGIC = b"MEVRSTAT"
FORMAT_VERSION = 1
"""Bump when the document's shape changes incompatibly: older blobs are then refused (``version``)
and the worker rebuilds from its inputs."""
MAX_RAW_BYTES = 64 * 1024 * 1024
"""Cap on a body once decompressed (a zlib bomb is refused, never inflated past this)."""
MAX_BLOB_BYTES = MAX_RAW_BYTES
"""Cap on a sealed blob as read (checked before the tag is computed over it)."""
MIN_SECRET_BYTES = 16
TAG_BYTES = 32
_HEADER = struct.Struct(">8sHqHII")
COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class Header:
    """The authenticated header of a blob."""

    key: str
    version: int
    as_of_ms: int
    raw_bytes: int
    blob_bytes: int


def check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise CheckpointError("secret", f"the checkpoint secret must be at least {MIN_SECRET_BYTES} bytes")


def _tag(secret: bytes, data: bytes | memoryview) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def seal(key: str, as_of_ms: int, document: Any, secret: bytes,
         default: Callable[[Any], Any] | None = None) -> bytes:
    """Serialise ``document`` (orjson; ``default`` encodes what orjson does not) into a sealed blob."""
    check_secret(secret)
    raw = orjson.dumps(document, default=default)
    if len(raw) > MAX_RAW_BYTES:
        raise CheckpointError("oversized", f"body of {len(raw)} bytes exceeds {MAX_RAW_BYTES}", key)
    body = zlib.compress(raw, COMPRESS_LEVEL)
    key_bytes = key.encode()
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, as_of_ms, len(key_bytes), len(raw), len(body))
    signed = head + key_bytes + body
    return signed + _tag(secret, signed)


def open_blob(blob: bytes, secret: bytes, expected_key: str | None = None) -> tuple[Header, Any]:
    """Authenticate and decode one blob; raises :class:`CheckpointError` (never anything else)."""
    check_secret(secret)
    key = expected_key
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CheckpointError("malformed", f"a checkpoint is bytes, not {type(blob).__name__}", key)
    data = bytes(blob)
    if len(data) > MAX_BLOB_BYTES:
        raise CheckpointError("oversized", f"{len(data)} bytes exceed the cap of {MAX_BLOB_BYTES}", key)
    if len(data) < _HEADER.size + TAG_BYTES or not data.startswith(MAGIC):
        raise CheckpointError("malformed", "not a MEV Risk Stream state checkpoint (bad magic or too short)",
                              key)
    signed, tag = memoryview(data)[:-TAG_BYTES], data[-TAG_BYTES:]
    if not hmac.compare_digest(_tag(secret, signed), tag):
        raise CheckpointError("forged", "HMAC tag does not verify (not written with this worker secret, "
                              "or altered)", key)
    _, version, as_of_ms, key_len, raw_len, body_len = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointError("version", f"format version {version}; this build reads {FORMAT_VERSION}", key)
    if _HEADER.size + key_len + body_len + TAG_BYTES != len(data):
        raise CheckpointError("malformed", "declared lengths do not match the blob size", key)
    if raw_len > MAX_RAW_BYTES:
        raise CheckpointError("oversized", f"declared body of {raw_len} bytes exceeds {MAX_RAW_BYTES}", key)
    try:
        own_key = data[_HEADER.size:_HEADER.size + key_len].decode()
    except UnicodeDecodeError:
        raise CheckpointError("malformed", "key is not utf-8", key) from None
    if expected_key is not None and own_key != expected_key:
        raise CheckpointError("malformed", f"blob of key {own_key!r} stored under {expected_key!r}", key)
    body = data[_HEADER.size + key_len:-TAG_BYTES]
    raw = _inflate(body, raw_len, own_key)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError("malformed", f"body is not JSON: {exc}", own_key) from None
    return Header(own_key, version, as_of_ms, raw_len, len(data)), document


def _inflate(body: bytes, raw_len: int, key: str) -> bytes:
    """Decompress at most ``raw_len`` (<= the cap) bytes; the body must inflate to exactly that."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, raw_len + 1)
    except zlib.error as exc:
        raise CheckpointError("malformed", f"body does not decompress: {exc}", key) from None
    if len(raw) > raw_len or inflater.unconsumed_tail:
        raise CheckpointError("oversized", f"body inflates past its declared {raw_len} bytes", key)
    if len(raw) != raw_len or not inflater.eof or inflater.unused_data:
        raise CheckpointError("malformed", "body is truncated or has trailing bytes", key)
    return raw

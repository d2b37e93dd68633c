"""Forged, malformed, oversized, other-version and inconsistent checkpoints are refused with a reason."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.assembly import build_pipeline
from agents.errors import MevRiskError
from agents.pipeline import RiskPipeline
from agents.state import CheckpointError, partitions_of, restore, take
from agents.state import envelope as env
from agents.state.codec import default
from agents.state.envelope import MAGIC, open_blob, seal
from tests.unit.state.conftest import OPTIONS, SECRET, Event, feed

_HEADER = struct.Struct(">8sHqHII")


@pytest.fixture(scope="module")
def taken(events: list[Event]) -> tuple[RiskPipeline, dict[str, bytes]]:
    pipeline = build_pipeline(OPTIONS)
    feed(pipeline, events[:3000])
    return pipeline, take(pipeline, partitions_of(pipeline), secret=SECRET)


@pytest.fixture(scope="module")
def blobs(taken: tuple[RiskPipeline, dict[str, bytes]]) -> dict[str, bytes]:
    return taken[1]


_FRESH: list[RiskPipeline] = []


def _fresh() -> RiskPipeline:
    """One fresh pipeline shared by the Hypothesis examples (their blobs fail before anything is installed;
    if one did install something, the next example fails on 'restore into a fresh pipeline')."""
    if not _FRESH:
        _FRESH.append(build_pipeline(OPTIONS))
    return _FRESH[0]


def _signed(head_and_body: bytes, secret: bytes = SECRET) -> bytes:
    return head_and_body + hmac.new(secret, head_and_body, hashlib.sha256).digest()


def _raw_blob(key: str, body: bytes, *, version: int = env.FORMAT_VERSION, raw_len: int | None = None,
              as_of: int = 0) -> bytes:
    """A blob sealed with the right secret around arbitrary body bytes (a writer that has the secret)."""
    k = key.encode()
    head = _HEADER.pack(MAGIC, version, as_of, len(k), len(body) if raw_len is None else raw_len, len(body))
    return _signed(head + k + body)


def _refused(blobs: dict[str, bytes]) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        restore(build_pipeline(OPTIONS), blobs, secret=SECRET)
    assert isinstance(caught.value, MevRiskError)
    return caught.value


def test_a_checkpoint_written_without_the_secret_is_forged(taken: Any) -> None:
    pipeline, blobs = taken
    attacker = take(pipeline, partitions_of(pipeline), secret=b"a-guessed-secret-of-the-cluster")
    assert _refused(attacker).reason == "forged"
    tampered = bytearray(blobs["p0"])
    tampered[len(tampered) // 2] ^= 0x01
    assert _refused({**blobs, "p0": bytes(tampered)}).reason == "forged"


def test_a_malicious_pickle_is_never_unpickled_without_the_secret(blobs: dict[str, bytes]) -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("unpickled an unauthenticated payload",))

    _, doc = open_blob(blobs["market"], SECRET, "market")
    doc["tick_models"]["pickle"] = pickle.dumps(Boom())
    forged = seal("market", 0, doc, b"the-attackers-own-secret-value", default)
    assert _refused({"market": forged}).reason == "forged"


def test_even_an_authenticated_pickle_may_only_name_model_classes(blobs: dict[str, bytes]) -> None:
    """Defence in depth: a blob sealed with a leaked secret still cannot name an arbitrary callable."""
    _, doc = open_blob(blobs["market"], SECRET, "market")
    doc["tick_models"]["pickle"] = pickle.dumps(print)  # builtins.print: not a model class
    header, _ = open_blob(blobs["market"], SECRET, "market")
    error = _refused({"market": seal("market", header.as_of_ms, doc, SECRET, default)})
    assert error.reason == "malformed" and "not allowed" in error.detail


def test_other_versions_and_shapes_are_refused(blobs: dict[str, bytes]) -> None:
    body = zlib.compress(b"{}")
    assert _refused({"market": _raw_blob("market", body, version=2, raw_len=2)}).reason == "version"
    assert _refused({"market": _raw_blob("market", body, raw_len=2)}).reason == "malformed"  # not a document
    assert _refused({"market": _raw_blob("market", b"not zlib", raw_len=8)}).reason == "malformed"
    assert _refused({"market": blobs["market"][:-1]}).reason in ("forged", "malformed")
    assert _refused({"market": b"MEVRSTAT"}).reason == "malformed"
    assert _refused({"p0": blobs["p0"], "market": blobs["p0"]}).reason == "malformed"  # under another key
    assert _refused({"p0": blobs["p0"]}).reason == "malformed"  # no market blob
    assert _refused({**blobs, "portfolio:alpha": blobs["p0"]}).reason == "malformed"
    assert _refused({"market": "not bytes"}).reason == "malformed"  # type: ignore[dict-item]


def test_a_zlib_bomb_is_not_inflated_past_the_cap() -> None:
    bomb = zlib.compress(b"\0" * (env.MAX_RAW_BYTES + 1024), 9)  # ~65 KiB that inflate to 64 MiB + 1 KiB
    assert len(bomb) < 1 << 20
    error = _refused({"market": _raw_blob("market", bomb, raw_len=env.MAX_RAW_BYTES + 1024)})
    assert error.reason == "oversized"
    error = _refused({"market": _raw_blob("market", bomb, raw_len=1000)})  # lies about its size
    assert error.reason == "oversized"


def test_an_oversized_blob_is_refused_before_its_tag_is_computed(monkeypatch: pytest.MonkeyPatch,
                                                                 blobs: dict[str, bytes]) -> None:
    monkeypatch.setattr(env, "MAX_BLOB_BYTES", len(blobs["market"]) - 1)
    monkeypatch.setattr(env.hmac, "new", lambda *a, **k: pytest.fail("tag computed over an oversized blob"))
    assert _refused(blobs).reason == "oversized"


def test_blobs_of_different_checkpoints_are_inconsistent(blobs: dict[str, bytes]) -> None:
    header, doc = open_blob(blobs["p0"], SECRET, "p0")
    older = seal("p0", header.as_of_ms - 60_000, doc, SECRET, default)  # p0 of an earlier checkpoint
    assert _refused({"market": blobs["market"], "p0": older}).reason == "inconsistent"


def test_a_pipeline_with_another_bar_is_incompatible(blobs: dict[str, bytes]) -> None:
    import dataclasses
    other = build_pipeline(dataclasses.replace(OPTIONS, bar_ms=5000))
    with pytest.raises(CheckpointError) as caught:
        restore(other, blobs, secret=SECRET)
    assert caught.value.reason == "incompatible"


def test_restore_needs_a_fresh_pipeline_and_a_real_secret(events: list[Event],
                                                          blobs: dict[str, bytes]) -> None:
    used = build_pipeline(OPTIONS)
    feed(used, events[:10])
    with pytest.raises(ValueError, match="fresh"):
        restore(used, blobs, secret=SECRET)
    for secret in (b"", b"short"):
        with pytest.raises(CheckpointError) as caught:
            restore(build_pipeline(OPTIONS), blobs, secret=secret)
        assert caught.value.reason == "secret"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512) | st.binary(max_size=256).map(lambda b: MAGIC + b))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    with pytest.raises(CheckpointError) as caught:
        open_blob(data, SECRET, "market")
    assert caught.value.reason in ("malformed", "forged", "oversized")


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=256), version=st.integers(0, 65535), raw_len=st.integers(0, 2**32 - 1),
       key=st.sampled_from(["market", "p0", "p7"]))
def test_authenticated_garbage_never_crashes_restore(body: bytes, version: int, raw_len: int,
                                                     key: str) -> None:
    """Even bytes sealed with the right secret (a buggy writer) only ever raise CheckpointError."""
    with pytest.raises(CheckpointError):
        restore(_fresh(), {key: _raw_blob(key, body, version=version, raw_len=raw_len)}, secret=SECRET)


@settings(max_examples=25, deadline=None)
@given(doc=st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                             max_size=4),
                        max_leaves=20))
def test_authenticated_documents_of_the_wrong_shape_never_crash_restore(doc: Any) -> None:
    blob = seal("market", 0, {"kind": "market", "config": {"bar_ms": 1000, "window_bars": 500}, "x": doc},
                SECRET, default)
    with pytest.raises(CheckpointError) as caught:
        restore(_fresh(), {"market": blob}, secret=SECRET)
    assert caught.value.reason == "malformed"

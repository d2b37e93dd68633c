"""Issue 12 item 1: bytes read from a topic never run as code.

``risk.models`` and ``risk.state`` hold pickles of online models, and anyone who can produce to the
cluster can write those topics. Every path from topic bytes to ``pickle`` verifies an HMAC keyed by
the worker secret first, inflates at most a capped size, and unpickles only model classes. A forged,
oversized or zlib-bomb record is refused and counted, and the worker keeps going.
"""

from __future__ import annotations

import builtins
import pickle
import struct
import zlib
from pathlib import Path

import pytest

from agents.anomaly.checkpoint import MAX_PART_BYTES, Checkpoint, restore
from agents.anomaly.errors import ModelStateError
from agents.anomaly.models import BUNDLE_KEY, STATE_VERSION, ModelBundle
from agents.state.envelope import MAX_RAW_BYTES, open_blob, seal
from agents.state.errors import CheckpointError
from tests.integration.conftest import env, start_worker, worker_watch  # noqa: F401  (fixtures)

SECRET = b"security-test-worker-secret"
START_MS = 1_767_225_600_000
OTHER = b"an-attacker-guessed-secret"


class _Evil:
    """Unpickling this writes a file: proof that the bytes ran as code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _evil(marker: Path) -> bytes:
    return pickle.dumps(_Evil(marker))


def test_whole_bundle_bytes_are_verified_before_unpickling(tmp_path: Path) -> None:
    """``ModelBundle.from_state_bytes`` (tests and tools) once unpickled after a magic check only."""
    marker = tmp_path / "pwned"
    legacy = b"MEVRISK-ML\x00" + struct.pack(">H", STATE_VERSION) + _evil(marker)  # the old format
    forged = Checkpoint(BUNDLE_KEY, -1, zlib.compress(_evil(marker))).to_bytes(OTHER)
    for data in (legacy, forged):
        with pytest.raises(ModelStateError):
            ModelBundle.from_state_bytes(data, SECRET)
    assert not marker.exists(), "a forged model checkpoint ran code"
    restored = ModelBundle.from_state_bytes(ModelBundle(seed=3).state_bytes(SECRET), SECRET)
    assert restored.status()["models_loaded"] == 1


def test_risk_models_forged_oversized_and_bombs_are_refused(tmp_path: Path) -> None:
    """What a producer to ``risk.models`` can write: each part is refused with its reason, none runs
    code, none is inflated past the cap; a genuine part after them still restores."""
    marker = tmp_path / "pwned"
    bomb = zlib.compress(b"\0" * (MAX_PART_BYTES + 1), 9)
    good = ModelBundle(seed=1)
    records: list[tuple[str, bytes | None]] = [
        ("portfolio:forged", Checkpoint("portfolio:forged", 5, zlib.compress(_evil(marker))).to_bytes(OTHER)),
        ("portfolio:unsigned", b"MEVRISK-CKPT2\x00" + struct.pack(">Hq", STATE_VERSION, 5) + b"\0" * 32
         + zlib.compress(_evil(marker))),
        ("portfolio:bomb", Checkpoint("portfolio:bomb", 5, bomb).to_bytes(SECRET)),
        ("portfolio:code", Checkpoint("portfolio:code", 5, zlib.compress(_evil(marker))).to_bytes(SECRET)),
        ("portfolio:junk", b"\xff" * 100_000),
        ("ticks", Checkpoint.take("ticks", good.tick_state(), 7).to_bytes(SECRET)),
    ]
    bundle = ModelBundle(seed=1)
    report = restore(bundle, records, SECRET)
    assert not marker.exists(), "a model checkpoint read from the topic ran code"
    assert report.restored == {"ticks": 7}
    assert set(report.refused) == {"portfolio:forged", "portfolio:unsigned", "portfolio:bomb",
                                   "portfolio:code", "portfolio:junk"}
    assert "forged" in report.refused["portfolio:forged"]
    assert "forged" in report.refused["portfolio:unsigned"]
    assert "inflates past" in report.refused["portfolio:bomb"]
    assert "not allowed" in report.refused["portfolio:code"]  # signed, still only model classes
    assert "bad magic" in report.refused["portfolio:junk"]


def test_risk_state_forged_oversized_and_bombs_are_refused(tmp_path: Path) -> None:
    """The sealed state blobs of ``risk.state``: tag first, then a capped inflate, then JSON."""
    blob = seal("p0", 1_000, {"a": 1}, SECRET)
    with pytest.raises(CheckpointError) as forged:
        open_blob(seal("p0", 1_000, {"a": 1}, OTHER), SECRET, expected_key="p0")
    assert forged.value.reason == "forged"
    with pytest.raises(CheckpointError) as altered:
        open_blob(blob[:-40] + b"\0" * 8 + blob[-32:], SECRET, expected_key="p0")
    assert altered.value.reason == "forged"
    with pytest.raises(CheckpointError) as oversized:
        open_blob(b"\0" * (MAX_RAW_BYTES + 1), SECRET)
    assert oversized.value.reason == "oversized"
    # a zlib bomb signed with the right secret but declaring a small size: never inflated past it
    import hashlib
    import hmac

    from agents.state.envelope import _HEADER, FORMAT_VERSION, MAGIC

    body = zlib.compress(b"\0" * (MAX_RAW_BYTES + 1), 9)
    signed = _HEADER.pack(MAGIC, FORMAT_VERSION, 1_000, 2, 10, len(body)) + b"p0" + body
    bomb = signed + hmac.new(SECRET, signed, hashlib.sha256).digest()
    with pytest.raises(CheckpointError) as inflated:
        open_blob(bomb, SECRET, expected_key="p0")
    assert inflated.value.reason == "oversized"
    assert open_blob(blob, SECRET, expected_key="p0")[1] == {"a": 1}


# ---- a real worker over a hostile risk.models ---------------------------------------------------
@pytest.mark.integration
def test_a_worker_starts_over_forged_and_bomb_model_checkpoints(
        env, start_worker, tmp_path: Path) -> None:  # noqa: F811
    """Forged, zlib-bomb and junk records on ``risk.models`` before the first start: the worker refuses
    and counts them (the parts start cold), runs no code, and processes its input."""
    from tests.integration.conftest import TEST_CHECKPOINT_SECRET, produce, run, wait_until

    marker = tmp_path / "pwned"
    secret = TEST_CHECKPOINT_SECRET.encode()
    bomb = zlib.compress(b"\0" * (MAX_PART_BYTES + 1), 9)
    records = [
        (b"ticks", Checkpoint("ticks", 5, zlib.compress(_evil(marker))).to_bytes(OTHER)),
        (b"portfolio:alpha", Checkpoint("portfolio:alpha", 5, bomb).to_bytes(secret)),
        (b"portfolio:beta", Checkpoint("portfolio:beta", 5, zlib.compress(_evil(marker))).to_bytes(secret)),
        (b"portfolio:gamma", b"\xff" * 10_000),
    ]
    run(produce(env.bootstrap, [(env.topic("risk.models"), key, value) for key, value in records]))
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "100", "--duration", "30",
                "--start-ms", str(START_MS), "--record", str(recording))
    # risk.models is read when state checkpoints are off (with them on, risk.state holds the models)
    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_STATE_CHECKPOINT_SECS="0",
                          MEVRISK_MODEL_CHECKPOINT_SECS="20")
    env.mevrisk("replay", str(recording), "--pace", "fast")
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= START_MS + 20_000, 120,
                   "the worker to process the input after refusing the hostile checkpoints")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    # each hostile part refused (a recovery after a rebalance would read and refuse them again)
    assert worker.metric("mevrisk_model_checkpoints_total", outcome="refused") >= len(records)
    assert not marker.exists(), "a checkpoint read from risk.models ran code in the worker"
    worker.assert_healthy()

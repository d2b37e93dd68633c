"""kill -9 the worker mid-stream, restart it: no alert event is missing and none is published twice."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import Env, consume, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
LATENESS_MS = 2_000
WORKER_ENV = {
    "MEVRISK_BAR_MS": "1000",
    "MEVRISK_IDLE_HEARTBEAT_SECS": "600",  # no idle clock advance while the test restarts the worker
    "MEVRISK_IDLE_SOURCE_SECS": "3",
}


def _split(recording: Path, cut_ms: int, first: Path, second: Path) -> None:
    lines = [line for line in recording.read_bytes().splitlines() if line.strip()]
    first.write_bytes(b"\n".join(x for x in lines if orjson.loads(x)["ts_ms"] < cut_ms) + b"\n")
    second.write_bytes(b"\n".join(x for x in lines if orjson.loads(x)["ts_ms"] >= cut_ms) + b"\n")


def test_kill_9_and_restart_matches_an_uninterrupted_run(env: Env, start_worker, tmp_path: Path) -> None:
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "150", "--duration", "120",
                "--start-ms", str(START_MS), "--incident", "flash-crash@60s/20s", "--record", str(recording))
    offline_path = tmp_path / "offline.jsonl"
    env.mevrisk("replay", "--offline", str(recording), "--bar-ms", "1000", "--out", str(offline_path))
    horizon = max(orjson.loads(x)["ts_ms"] for x in recording.read_bytes().splitlines() if x.strip())
    expected = [
        a["event_id"] for a in map(orjson.loads, offline_path.read_bytes().splitlines())
        if a["ts_ms"] <= horizon - LATENESS_MS
    ]
    assert expected

    cut_ms = START_MS + 75_000  # after the crash's first alerts
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    _split(recording, cut_ms, first, second)

    worker = start_worker(**WORKER_ENV)
    env.mevrisk("replay", str(first))
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000, 90,
                   "the first worker to process most of the first half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    worker.stop(signal.SIGKILL)

    restarted = start_worker(**WORKER_ENV)
    env.mevrisk("replay", str(second))

    def live_ids() -> list[str]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), 10_000, timeout=5))
        return [a["event_id"] for a in got if a["ts_ms"] <= horizon - LATENESS_MS]

    try:
        ids = wait_until(lambda: (x := live_ids()) and len(set(x)) >= len(set(expected)) and x, 90,
                         "alert events after the restart")
    except AssertionError as exc:
        got = live_ids()
        raise AssertionError(
            f"{exc}: expected {len(expected)}, got {len(got)}, missing {set(expected) - set(got)}\n"
            f"{restarted.state()}"
        ) from None
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"published twice: {duplicates}"
    assert sorted(ids) == sorted(expected)
    assert restarted.proc.poll() is None

"""Two workers; kill -9 one mid-stream: the survivor takes over its partitions and the alert events
of the whole run equal those of the offline replay, none missing and none published twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.conftest import Env, wait_until
from tests.integration.test_crash_recovery import (
    START_MS,
    WORKER_ENV,
    await_run_alerts,
    record_flash_crash,
    split_at,
)

pytestmark = pytest.mark.integration

TAKEOVER_ENV = {**WORKER_ENV, "BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


@pytest.mark.kills_worker
def test_survivor_takes_over_a_killed_workers_partitions(env: Env, start_worker, tmp_path: Path) -> None:
    recording, horizon, expected = record_flash_crash(env, tmp_path)
    cut_ms = START_MS + 50_000  # before the crash: the survivor must know the killed worker's positions
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)

    workers = [start_worker(**TAKEOVER_ENV), start_worker(**TAKEOVER_ENV)]
    env.mevrisk("replay", str(first))

    def busy() -> bool:
        return any(w.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000 for w in workers)

    try:
        wait_until(busy, 90, "the owner to process most of the first half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers[0].state()}\n{workers[1].state()}") from None
    # kill the worker that owns the portfolios (alpha and beta share a partition of four)
    owned = [w.metric("mevrisk_events_in_total", topic="mev.positions") for w in workers]
    victim, survivor = workers if owned[0] >= owned[1] else workers[::-1]
    assert max(owned) > 0, owned
    victim.stop(signal.SIGKILL)
    env.mevrisk("replay", str(second))

    await_run_alerts(env, survivor, horizon, expected, 120, "every alert event of the run")
    survivor.assert_healthy()
    # the survivor continued the dead worker's audit chains (same records, same hashes)
    verified = env.mevrisk("audit", "verify")  # exits 1 on a broken chain
    assert "risk-p0" in verified.stdout and verified.stdout.rstrip().endswith("ok"), verified.stdout

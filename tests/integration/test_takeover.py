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

    # a session timeout the test would not wait out: the survivor's peer watch evicts the dead worker
    # (its web port refuses connections) long before the coordinator would
    watched = {**TAKEOVER_ENV, "BROKER_SESSION_TIMEOUT": "30"}
    workers = [start_worker(**watched), start_worker(**watched)]
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
    evictions = survivor.metric("mevrisk_peer_evictions_total")
    assert evictions == 1, survivor.log.read_text(errors="replace")[-3000:]
    # the survivor continued the dead worker's audit chains (same records, same hashes)
    verified = env.mevrisk("audit", "verify")  # exits 1 on a broken chain
    assert "risk-p0" in verified.stdout and verified.stdout.rstrip().endswith("ok"), verified.stdout


@pytest.mark.kills_worker
def test_a_standby_takes_over_from_the_dead_workers_checkpoint(
        env: Env, start_worker, tmp_path: Path) -> None:
    """With MEVRISK_STANDBY_REPLICAS=1 every worker keeps a warm copy of the state checkpoints; both
    take theirs at the same instants, so the survivor restores the killed worker's partitions from
    its last checkpoint (and its own from its own) and replays only what came after: the alert
    events of the run still equal the offline replay's, none twice, and the audit chains verify."""
    import re

    recording, horizon, expected = record_flash_crash(env, tmp_path)
    cut_ms = START_MS + 50_000
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)
    standby_env = {**TAKEOVER_ENV, "MEVRISK_STATE_CHECKPOINT_SECS": "10", "MEVRISK_STANDBY_REPLICAS": "1"}
    workers = [start_worker(**standby_env), start_worker(**standby_env)]
    # paced: the clocks cross several checkpoint instants after both workers joined
    env.mevrisk("replay", "--pace", "realtime", "--speed", "5", str(first))

    def checkpointed() -> bool:
        return all(w.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000
                   and w.metric("mevrisk_state_checkpoints_total", outcome="published") >= 1 for w in workers)

    try:
        wait_until(checkpointed, 120, "both workers to process the first half and write checkpoints")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{workers[0].state()}\n{workers[1].state()}") from None
    owned = [w.metric("mevrisk_events_in_total", topic="mev.positions") for w in workers]
    victim, survivor = workers if owned[0] >= owned[1] else workers[::-1]
    assert max(owned) > 0, owned
    # the work is split: each worker's pipeline holds only the portfolios of its partitions
    held = [set(w.health()[1]["portfolios"]["local"]) for w in (victim, survivor)]
    assert held == [{"alpha", "beta"}, set()], held
    victim.stop(signal.SIGKILL)
    # the rest is published once the survivor has taken over: meanwhile its clock stays where the
    # victim's stopped, as in a live run where the eviction (seconds) is shorter than the checkpoint
    # interval, so both still hold a checkpoint of the same instant (each keeps its last two)
    took_over = re.compile(r"assignment changed from \[[0-9, ]*\] to \[0, 1, 2, 3\](?s:.*)recovery: ")
    wait_until(lambda: took_over.search(survivor.log.read_text(errors="replace")), 60,
               "the survivor to take over every partition")
    env.mevrisk("replay", str(second))
    await_run_alerts(env, survivor, horizon, expected, 120, "every alert event of the run")
    survivor.assert_healthy()
    assert set(survivor.health()[1]["portfolios"]["local"]) == {"alpha", "beta"}
    log = survivor.log.read_text(errors="replace")
    restored_all = re.compile(r"recovery: restored state as_of_ms=\d+ .*?partitions=\[0, 1, 2, 3\]")
    assert restored_all.search(log), f"the survivor restored no checkpoint of all partitions:\n{log[-3000:]}"
    assert "from the warm copy" in log, "the standby restored from its warm copy, not from the topic"
    verified = env.mevrisk("audit", "verify")
    assert "risk-p0" in verified.stdout and verified.stdout.rstrip().endswith("ok"), verified.stdout

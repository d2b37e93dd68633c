"""A record that crashed an agent is quarantined by offset: the restarted worker skips it and goes on
(issue 11, supervision: a restart never re-crashes on the same input)."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from tests.integration.conftest import CrashWatch, Env, Worker, produce, read_to_end, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000


def _positions(n: int) -> list[bytes]:
    from streams.sim.generator import Simulator

    sim = Simulator(seed=5, start_ms=START_MS, rate_eps=200, duration_s=30)
    found = [orjson.dumps(e.value) for e in sim if e.topic == "mev.positions" and isinstance(e.value, dict)]
    return found[:n]


def _portfolio(raw: bytes) -> bytes:
    return str(orjson.loads(raw)["portfolio"]).encode()


def test_a_record_that_crashed_an_agent_is_skipped_after_the_restart(
        env: Env, start_worker: Callable[..., Worker], worker_watch: CrashWatch) -> None:
    first, *rest = _positions(5)
    crashing = start_worker(MEVRISK_FAULT_INJECT="apply_positions")
    run(produce(env.bootstrap, [(env.topic("mev.positions"), _portfolio(first), first)]))
    code = crashing.proc.wait(timeout=90)
    assert code != 0, "a crashed agent stops the worker with a non-zero exit"
    # the crash was the point: forget it so the watch checks only the restarted worker
    worker_watch.found.clear()
    worker_watch.workers.remove(crashing)

    letters = run(read_to_end(env.bootstrap, env.topic("risk.dlq")))
    quarantined = [d for d in letters if d.get("quarantined")]
    assert len(quarantined) == 1 and quarantined[0]["reason"] == "processing_error"
    assert quarantined[0]["offset"] == 0 and "injected fault" in quarantined[0]["detail"]

    restarted = start_worker()  # no fault: the quarantined record must not be offered again
    run(produce(env.bootstrap, [(env.topic("mev.positions"), _portfolio(r), r) for r in rest]))
    # the quarantined record is skipped by the agent (uncommitted) or by recovery's replay (committed)
    wait_until(lambda: "quarantined input records" in restarted.log_tail(100_000), 90,
               "recovery loaded the quarantine")
    consumed = wait_until(
        lambda: (n := restarted.metric("mevrisk_events_in_total", topic="mev.positions")) >= len(rest) and n,
        90, "the other positions consumed")
    assert consumed == len(rest), "the quarantined record was not offered again"
    time.sleep(1)
    restarted.assert_healthy()

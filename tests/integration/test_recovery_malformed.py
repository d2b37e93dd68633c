"""Recovery reads the tails of the output topics (risk.snapshots, risk.alerts, risk.controls,
risk.audit) at every start. Those are bytes like any other: a malformed record there (written by a
buggy or foreign producer) must not stop the worker from starting and working."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import Env, end_offsets, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
OUTPUT_TOPICS = ("risk.snapshots", "risk.alerts", "risk.controls", "risk.audit")
MALFORMED: list[bytes | None] = [
    b"{not json", b"[1, 2]", b'"a string"', b'{"ts_ms": "soon", "portfolio": 7}', b"{}", None,
]


async def _poison(env: Env) -> int:
    """Every malformed value on every partition of every output topic; the number written."""
    ends = await end_offsets(env.bootstrap, [env.topic(t) for t in OUTPUT_TOPICS])
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, acks="all")
    await producer.start()
    try:
        for tp in ends:
            for value in MALFORMED:
                await producer.send(tp.topic, value=value, key=b"poison", partition=tp.partition)
        await producer.flush()
    finally:
        await producer.stop()
    return len(ends) * len(MALFORMED)


def test_malformed_output_records_do_not_stop_a_start(env: Env, start_worker, tmp_path: Path) -> None:
    assert run(_poison(env)) >= len(OUTPUT_TOPICS) * len(MALFORMED)
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "100", "--duration", "30",
                "--start-ms", str(START_MS), "--record", str(recording))
    worker = start_worker(MEVRISK_BAR_MS="1000")
    env.mevrisk("replay", str(recording), "--pace", "fast")
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= START_MS + 20_000, 90,
                   "the worker to process the input after a start over malformed output records")
        wait_until(lambda: worker.metric("mevrisk_outputs_total", topic="risk.snapshots") > 0, 30,
                   "snapshots published")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    worker.assert_healthy()
    # and a restart over the same topics (now holding good records after the bad) starts too
    worker.stop()
    restarted = start_worker(MEVRISK_BAR_MS="1000")
    wait_until(lambda: restarted.health()[1].get("recovering") is False, 90, "the restarted worker recovered")
    restarted.assert_healthy()

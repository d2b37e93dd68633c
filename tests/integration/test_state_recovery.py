"""State checkpoints (MEVRISK_STATE_CHECKPOINT_SECS): kill -9 long after a checkpoint, restart: the
worker restores the checkpoint, replays only the inputs after it, and its alert events equal the
offline replay's, none missing and none twice."""

from __future__ import annotations

import itertools
import re
import signal
import time
from pathlib import Path

import orjson
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

STATE_ENV = {**WORKER_ENV, "MEVRISK_STATE_CHECKPOINT_SECS": "10"}
RESTORED = re.compile(r"recovery: restored state as_of_ms=(\d+) .* replayed (\d+) partitioned input records")
COLD = re.compile(r"recovery: replayed (\d+) partitioned input records")


def partitioned_records(recording: Path) -> int:
    """Position and strategy-stats events in a recording (what a full replay reads)."""
    return sum(1 for x in recording.read_bytes().splitlines()
               if x.strip() and orjson.loads(x).get("topic") != "mev.market.ticks")


@pytest.mark.kills_worker
def test_kill_9_long_after_a_checkpoint_restores_it_and_replays_only_the_rest(
        env: Env, start_worker, tmp_path: Path) -> None:
    recording, horizon, expected = record_flash_crash(env, tmp_path)
    cut_ms = START_MS + 75_000
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)

    worker = start_worker(**STATE_ENV)
    # paced (5x real time): the watermark moves bar by bar and crosses several checkpoint times; a
    # backlog read at once (fast pace) moves it in one pipeline call, which takes one checkpoint
    env.mevrisk("replay", "--pace", "realtime", "--speed", "5", str(first))
    try:
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000, 90,
                   "the first worker to process most of the first half")
        wait_until(lambda: worker.metric("mevrisk_state_checkpoints_total", outcome="published") >= 3, 60,
                   "state checkpoints written")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    take_s = worker.metric("mevrisk_state_checkpoint_take_seconds")
    checkpoint_bytes = worker.metric("mevrisk_state_checkpoint_bytes")
    assert COLD.search(worker.log.read_text()), "the first start found no checkpoint and replayed"
    worker.stop(signal.SIGKILL)

    restarted = start_worker(**STATE_ENV)
    wait_until(lambda: RESTORED.search(restarted.log.read_text()) or COLD.search(restarted.log.read_text()),
               90, "the restarted worker's recovery")
    env.mevrisk("replay", str(second))
    await_run_alerts(env, restarted, horizon, expected, 90, "alert events after the restart")

    text = restarted.log.read_text()
    match = RESTORED.search(text)
    assert match, f"the restart restored no state checkpoint:\n{restarted.log_tail()}"
    as_of_ms, replayed = int(match.group(1)), int(match.group(2))
    total = partitioned_records(first)
    assert as_of_ms >= START_MS + 50_000, "the checkpoint restored is one of the last ones taken"
    assert replayed < total / 5, f"replayed {replayed} of {total} partitioned records: not only the tail"
    assert restarted.metric("mevrisk_state_checkpoints_total", outcome="restored") == 1
    assert restarted.metric("mevrisk_state_checkpoints_total", outcome="refused") == 0
    print(f"state checkpoint: take {take_s * 1000:.0f} ms, {checkpoint_bytes:.0f} bytes; restart "
          f"restored as_of_ms={as_of_ms}, replayed {replayed} of {total} partitioned records")
    restarted.assert_healthy()


@pytest.mark.kills_worker
def test_an_acknowledgement_survives_kill_9_with_state_checkpoints(
        env: Env, start_worker, tmp_path: Path) -> None:
    """The acknowledgement is either in the restored checkpoint or re-applied from risk.audit, never
    both: it is published once and the alert does not escalate after the restart."""
    import shutil
    import urllib.request

    from streams.settings import REPO_ROOT
    from tests.integration.conftest import consume, read_to_end, run, wait_idle
    from tests.integration.test_crash_recovery import FAST_RULES

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "deploy" / "config", config)
    # escalation 60 s after firing (~48 s): due at ~108 s, well after the acknowledgement (~73 s),
    # and inside the second half, where it must not happen
    rules = FAST_RULES.replace("{after: 25s,", "{after: 60s,")
    assert rules != FAST_RULES
    (config / "rules.yaml").write_text(rules)
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "150", "--duration", "150",
                "--start-ms", str(START_MS), "--incident", "flash-crash@40s/20s", "--record", str(recording))
    cut_ms = START_MS + 75_000
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)
    # one checkpoint (60 s), before the acknowledgement (~73 s, the watermark at the end of the first
    # half less the allowed lateness): the restart restores it, replays the inputs after it and
    # re-applies the acknowledgement from risk.audit. Paced (4x), so the watermark crosses 60 s well
    # before the end of the first half (a backlog read at once moves it in one pipeline call, and the
    # only checkpoint would then be taken at the acknowledgement's time); 15 s of input after the
    # checkpoint, so some are still to replay at the restart even when the worker lagged the replay.
    worker_env = {**STATE_ENV, "MEVRISK_STATE_CHECKPOINT_SECS": "60", "MEVRISK_CONFIG_DIR": str(config),
                  "MEVRISK_API_TOKENS": '{"op-token": {"role": "operator", "name": "oncall-1"}}'}

    worker = start_worker(**worker_env)
    env.mevrisk("replay", "--pace", "realtime", "--speed", "4", str(first))

    def firing() -> list[dict]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), 10_000, timeout=3))
        return [a for a in got if a["transition"] == "firing"]

    alert = wait_until(firing, 90, "a firing alert")[0]
    wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= START_MS + 61_000, 90,
               "the watermark past the checkpoint at 60 s")
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}/api/v1/alerts", method="POST",
        data=orjson.dumps({"alert_id": alert["id"], "action": "acknowledge", "comment": "on it"}),
        headers={"Authorization": "Bearer op-token", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    worker.stop(signal.SIGKILL)

    restarted = start_worker(**worker_env)
    env.mevrisk("replay", str(second))
    end_ms = START_MS + 140_000
    try:
        wait_until(lambda: restarted.metric("mevrisk_watermark_seconds") * 1000 >= end_ms, 120,
                   "the restarted worker to process the second half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{restarted.state()}") from None
    restored = RESTORED.search(restarted.log.read_text())
    assert restored, restarted.log_tail()
    events = run(read_to_end(env.bootstrap, env.topic("risk.alerts"), wait_idle(env, ["risk.alerts"])))
    mine = [a for a in events if a["fingerprint"] == alert["fingerprint"]]
    ids = [a["event_id"] for a in events]
    assert len(ids) == len(set(ids)), "no alert event is published twice"
    acked = [a for a in mine if a["transition"] == "acknowledged"]
    assert len(acked) == 1
    assert int(restored.group(1)) < acked[0]["ts_ms"] and int(restored.group(2)) > 0, (
        "the checkpoint restored precedes the acknowledgement, and the inputs after it are replayed")
    assert "escalated" not in [a["transition"] for a in mine], [(a["transition"], a["ts_ms"]) for a in mine]
    verified = env.mevrisk("audit", "verify")
    assert " ok" in verified.stdout, verified.stdout


async def _write_state_set(bootstrap: str, topic: str, app_id: str, blobs: dict[str, bytes],
                           as_of_ms: int) -> None:
    """Write a checkpoint set and its index as a worker would (streams.state_store's layout)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 1024 * 1024, acks="all")
    await producer.start()
    try:
        headers = [("as_of_ms", str(as_of_ms).encode())]
        keys = {key: f"{app_id}:w0-1-2-3:{key}:0" for key in blobs}
        for key, blob in blobs.items():
            await producer.send(topic, value=blob, key=keys[key].encode(), headers=headers)
        index = {"as_of_ms": as_of_ms, "partitions": [0, 1, 2, 3], "leader": True, "keys": keys}
        await producer.send(topic, value=orjson.dumps(index), key=f"{app_id}:w0-1-2-3:index:0".encode(),
                            headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def test_a_forged_checkpoint_is_refused_and_the_worker_replays(
        env: Env, start_worker, tmp_path: Path) -> None:
    """A complete checkpoint set written by a client without the worker secret: refused (logged,
    counted), and the worker rebuilds from the retained inputs: its alert events equal the offline
    replay's."""
    from agents.assembly import PipelineOptions, build_pipeline
    from agents.state import take
    from tests.integration.conftest import run

    recording, horizon, expected = record_flash_crash(env, tmp_path)
    forger = build_pipeline(PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000))
    for line in recording.read_bytes().splitlines()[:2000]:
        event = orjson.loads(line)
        forger.offer(event["topic"], event["value"], 0)
    blobs = take(forger, {0, 1, 2, 3}, secret=b"not-the-worker-secret-0123456789")
    run(_write_state_set(env.bootstrap, env.topic("risk.state"), f"{env.prefix}app", blobs,
                         forger.watermark_ms))

    worker = start_worker(**STATE_ENV, allow_log="refused")
    env.mevrisk("replay", str(recording))
    await_run_alerts(env, worker, horizon, expected, 120, "alert events after the refused checkpoint")
    text = worker.log.read_text()
    assert "refused (forged)" in text, worker.log_tail()
    assert COLD.search(text), "the worker replayed the retained inputs"
    assert worker.metric("mevrisk_state_checkpoints_total", outcome="refused") == 1
    assert worker.metric("mevrisk_state_checkpoints_total", outcome="restored") == 0
    worker.assert_healthy()


def _partition_of(key: str, partitions: int) -> int:
    """The partition the default (murmur2) partitioner sends ``key`` to."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


async def _offset_of(bootstrap: str, topic: str, partition: int, key: str) -> int:
    """The offset of the first record with ``key`` on ``topic[partition]``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for message in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if message.key == key.encode():
                    return int(message.offset)
    finally:
        await consumer.stop()
    raise AssertionError(f"no record with key {key!r} on {tp}")


async def _log_start(bootstrap: str, topic: str, partition: int) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return int((await consumer.beginning_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def _set_retention(bootstrap: str, topics: list[str], retention_ms: int, segment_ms: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic,
                           configs={"retention.ms": str(retention_ms), "segment.ms": str(segment_ms)})
            for topic in topics])
    finally:
        await admin.close()


@pytest.mark.kills_worker
def test_a_position_older_than_the_input_retention_survives_restarts(
        env: Env, start_worker, tmp_path: Path) -> None:
    """A position opened once and never updated outlives its record on ``mev.positions`` (the topic's
    retention is cut to 3 s until the record is gone): the state checkpoints carry it through two
    kill -9 restarts, and the portfolio's snapshots still hold it."""
    from tests.integration.conftest import run

    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "7", "--rate", "100", "--duration", "150",
                "--start-ms", str(START_MS), "--record", str(recording))
    events = [orjson.loads(x) for x in recording.read_bytes().splitlines() if x.strip()]
    partitions = 4
    template = next(e for e in events if e["topic"] == "mev.positions" and e["value"]["action"] == "open")
    home = _partition_of(template["key"], partitions)
    # on the partition of a busy portfolio: its records roll the segment that retention deletes
    keeper = next(n for n in (f"keeper-{i}" for i in range(1000)) if _partition_of(n, partitions) == home)
    opened_ms = START_MS + 2_000
    position = {**template["value"], "portfolio": keeper, "position_id": f"{keeper}-pos", "seq": 0,
                "ts_ms": opened_ms}
    events.append({"topic": "mev.positions", "key": keeper, "ts_ms": opened_ms, "value": position})
    events.sort(key=lambda e: e["ts_ms"])
    bounds = [START_MS, START_MS + 90_000, START_MS + 125_000, START_MS + 10**9]
    chunks = [[e for e in events if lo <= e["ts_ms"] < hi] for lo, hi in itertools.pairwise(bounds)]
    # the first record after the history on the keeper's partition: appended once retention is cut, it
    # rolls the segment holding the keeper's position, which retention then deletes
    roller = next(e for e in chunks[1] if e["topic"] == "mev.positions"
                  and _partition_of(e["key"], partitions) == home)
    chunks[1].remove(roller)
    parts = [tmp_path / f"part{i}.jsonl" for i in range(4)]
    for path, chunk in zip(parts, [chunks[0], [roller], *chunks[1:]], strict=True):
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in chunk) + b"\n")
    positions_topic = env.topic("mev.positions")

    def holds_keeper_after(ts_ms: int) -> bool:
        from tests.integration.conftest import consume

        got = run(consume(env.bootstrap, env.topic("risk.snapshots"), 100_000, timeout=3))
        mine = [s for s in got if s.get("portfolio") == keeper and s["ts_ms"] >= ts_ms]
        return bool(mine) and mine[-1]["active_positions"] == 1 and mine[-1]["total_exposure_usd"] > 0

    worker = start_worker(**STATE_ENV)
    env.mevrisk("replay", "--pace", "realtime", "--speed", "5", str(parts[0]))
    keeper_offset = run(_offset_of(env.bootstrap, positions_topic, home, keeper))
    try:
        wait_until(lambda: holds_keeper_after(START_MS + 70_000), 120, "snapshots of the keeper portfolio")
        wait_until(lambda: worker.metric("mevrisk_state_checkpoints_total", outcome="published") >= 2, 60,
                   "state checkpoints written")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None

    # the history is processed and checkpointed: now the input retention passes it by
    run(_set_retention(env.bootstrap, [positions_topic], retention_ms=3_000, segment_ms=1_000))
    time.sleep(1.5)
    env.mevrisk("replay", str(parts[1]))  # one record: rolls the segment
    wait_until(lambda: run(_log_start(env.bootstrap, positions_topic, home)) > keeper_offset, 90,
               "retention to delete the keeper's position record")
    run(_set_retention(env.bootstrap, [positions_topic], retention_ms=7 * 86_400_000,
                       segment_ms=7 * 86_400_000))

    restarts = [(parts[2], START_MS + 105_000), (parts[3], START_MS + 130_000)]
    for restart, (part, after_ms) in enumerate(restarts):
        wait_until(lambda w=worker: w.metric("mevrisk_state_checkpoints_total", outcome="published") >= 1,
                   60, "a state checkpoint written by this worker")
        worker.stop(signal.SIGKILL)
        worker = start_worker(**STATE_ENV)
        wait_until(lambda w=worker: RESTORED.search(w.log.read_text()) or COLD.search(w.log.read_text()),
                   90, "the restarted worker's recovery")
        assert RESTORED.search(worker.log.read_text()), f"restart {restart + 1} restored no checkpoint:\n" \
                                                        f"{worker.log_tail()}"
        env.mevrisk("replay", "--pace", "realtime", "--speed", "5", str(part))
        wait_until(lambda t=after_ms: holds_keeper_after(t), 90,
                   f"the keeper's position in snapshots after restart {restart + 1}")
    assert run(_log_start(env.bootstrap, positions_topic, home)) > keeper_offset
    worker.assert_healthy()

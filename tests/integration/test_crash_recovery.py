"""kill -9 the worker mid-stream, restart it: no alert event is missing and none is published twice."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import Env, Worker, consume, read_to_end, run, wait_idle, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
LATENESS_MS = 2_000
WORKER_ENV = {
    "MEVRISK_BAR_MS": "1000",
    "MEVRISK_IDLE_HEARTBEAT_SECS": "600",  # no idle clock advance while the test restarts the worker
    "MEVRISK_IDLE_SOURCE_SECS": "3",
}


def split_at(recording: Path, cut_ms: int, first: Path, second: Path) -> None:
    lines = [line for line in recording.read_bytes().splitlines() if line.strip()]
    first.write_bytes(b"\n".join(x for x in lines if orjson.loads(x)["ts_ms"] < cut_ms) + b"\n")
    second.write_bytes(b"\n".join(x for x in lines if orjson.loads(x)["ts_ms"] >= cut_ms) + b"\n")


def record_flash_crash(env: Env, tmp_path: Path) -> tuple[Path, int, list[str]]:
    """A 120 s recording with a flash crash at 60 s, its last event time, and the ids of the alert
    events the offline replay raises up to that time less the allowed lateness."""
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
    return recording, horizon, expected


def await_run_alerts(env: Env, worker: Worker, horizon: int, expected: list[str], timeout: float,
                     what: str) -> None:
    """Wait until every ``expected`` alert event (up to ``horizon`` less the lateness) is on
    risk.alerts; then none may be there twice and none that was not expected."""
    def published() -> list[str]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), 10_000, timeout=5))
        return [a["event_id"] for a in got if a["ts_ms"] <= horizon - LATENESS_MS]

    try:
        wait_until(lambda: (x := published()) and set(expected) <= set(x), timeout, what)
    except AssertionError as exc:
        got = published()
        raise AssertionError(
            f"{exc}: expected {len(expected)}, got {len(got)}, missing {set(expected) - set(got)}, "
            f"unexpected {set(got) - set(expected)}\n{worker.state()}"
        ) from None
    # read to a known end: everything published for the whole input lies below these offsets
    ends = wait_idle(env, ["risk.alerts"])
    ids = [a["event_id"] for a in run(read_to_end(env.bootstrap, env.topic("risk.alerts"), ends))
           if a["ts_ms"] <= horizon - LATENESS_MS]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates, f"published twice: {duplicates}"
    assert sorted(ids) == sorted(expected)


@pytest.mark.kills_worker
def test_kill_9_and_restart_matches_an_uninterrupted_run(env: Env, start_worker, tmp_path: Path) -> None:
    recording, horizon, expected = record_flash_crash(env, tmp_path)

    cut_ms = START_MS + 75_000  # after the crash's first alerts
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)

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

    await_run_alerts(env, restarted, horizon, expected, 90, "alert events after the restart")
    restarted.assert_healthy()


FAST_RULES = """
rules:
  - name: HighVaR95
    scope: portfolio
    expr: snapshot.var_95_usd > 10000.0
    for: 5s
    keep_firing_for: 2m
    severity: high
    annotations: {summary: "VaR 95 {{ var_95_usd | usd }} above 10,000 USD"}
    cooldown: 10m
    channels: [slack]
    escalate:
      - {after: 25s, severity: critical, channels: [sms]}
"""


@pytest.mark.kills_worker
def test_an_acknowledgement_survives_kill_9(env: Env, start_worker, tmp_path: Path) -> None:
    """Acked before the crash, the alert must not escalate after the restart (the replay re-applies
    the acknowledgement read back from risk.audit)."""
    import shutil
    import urllib.request

    from streams.settings import REPO_ROOT

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "deploy" / "config", config)
    (config / "rules.yaml").write_text(FAST_RULES)
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "150", "--duration", "150",
                "--start-ms", str(START_MS), "--incident", "flash-crash@40s/20s", "--record", str(recording))
    cut_ms = START_MS + 75_000
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)
    worker_env = {**WORKER_ENV, "MEVRISK_CONFIG_DIR": str(config),
                  "MEVRISK_API_TOKENS": '{"op-token": {"role": "operator", "name": "oncall-1"}}'}

    worker = start_worker(**worker_env)
    env.mevrisk("replay", str(first))

    def firing() -> list[dict]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), 10_000, timeout=3))
        return [a for a in got if a["transition"] == "firing"]

    alert = wait_until(firing, 90, "a firing alert")[0]
    wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000, 90,
               "the first half processed")
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
    events = run(read_to_end(env.bootstrap, env.topic("risk.alerts"), wait_idle(env, ["risk.alerts"])))
    mine = [a for a in events if a["fingerprint"] == alert["fingerprint"]]
    ids = [a["event_id"] for a in events]
    assert len(ids) == len(set(ids)), "no alert event is published twice"
    assert [a["transition"] for a in mine].count("acknowledged") == 1
    replayed = {k: restarted.metric("mevrisk_pipeline_events", kind=k)
                for k in ("operator_replayed", "operator_skipped", "late", "released")}
    assert "escalated" not in [a["transition"] for a in mine], (
        [(a["transition"], a["ts_ms"]) for a in mine], replayed)
    assert replayed["operator_replayed"] == 1, "the acknowledgement was re-applied by the replay"
    verified = env.mevrisk("audit", "verify")
    assert " ok" in verified.stdout, verified.stdout

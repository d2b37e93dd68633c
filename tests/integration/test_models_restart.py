"""kill -9 the worker, restart it with a market replay window too small to rebuild the online models:
restored from ``risk.models``, the anomaly scores after the restart equal an uninterrupted run's;
started cold (restore disabled), they do not.

The risk core is rebuilt by replay alone (its state is not checkpointed), so the test gives it
windows the small tick window still refills exactly: a copy of ``deploy/config`` with 20-bar return
windows, fast EWMAs (they forget the missing history to the last bit within 40 bars) and a 10 s gas
window. Its rules fire no portfolio alert, whose cooldown history would otherwise differ with
such a short tick window (that is the alert engine's recovery, not the models'). What remains to
differ is what only the models hold: what they learned from the snapshots and ticks before the
window.
"""

from __future__ import annotations

import math
import re
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from agents.anomaly.checkpoint import Checkpoint
from agents.assembly import PipelineOptions
from agents.replay import read_lines, replay
from streams.settings import REPO_ROOT
from tests.integration.conftest import TEST_CHECKPOINT_SECRET, Env, consume, run, wait_until
from tests.integration.test_crash_recovery import split_at

pytestmark = pytest.mark.integration

DURATION_S = 180
BUDGET_S = 270
"""Wall seconds every wait of the test shares, so that it fails with its own message within the
suite's 300 s timeout."""


class Times(NamedTuple):
    """Event times of the run: recent ones, because the producer stamps records with them
    (CreateTime) and the broker deletes records older than its 7-day retention at its next
    retention check (inputs the restart replays). Taken when the test runs, not at import."""

    start_ms: int
    cut_ms: int
    window_from_ms: int  # the restarted market feed re-reads the ticks from about here

    @classmethod
    def now(cls) -> Times:
        start_ms = int(time.time()) // 60 * 60_000 - 600_000
        return cls(start_ms, start_ms + 120_000, start_ms + 35_000)


RULES = """
rules:
  - name: ImpossibleDrawdown
    scope: strategy
    expr: strategy.drawdown_usd > 1.0e15
    for: 0s
    severity: low
    annotations: {summary: "never fires"}
"""
RISK_OVERRIDES = {
    "window_bars": "20", "ewma_lambda": "0.3", "gas_window_ms": "10000", "liquidity_ewma_alpha": "0.5",
}


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "deploy" / "config", config)
    (config / "rules.yaml").write_text(RULES)
    risk = (config / "risk.yaml").read_text()
    for key, value in RISK_OVERRIDES.items():
        risk, n = re.subn(rf"^{key}:\s*\S+", f"{key}: {value}", risk, flags=re.MULTILINE)
        assert n == 1, key
    (config / "risk.yaml").write_text(risk)
    return config


def _replay_window(first: Path, partitions: int, window_from_ms: int) -> int:
    """Ticks per partition that reach back to ``window_from_ms`` on the busiest tick partition, but
    not to the start (the producer's partitioner, as ``mevrisk replay`` uses it)."""
    partitioner = DefaultPartitioner()
    recent: dict[int, int] = {}
    total: dict[int, int] = {}
    for line in first.read_bytes().splitlines():
        row = orjson.loads(line)
        if row["topic"] != "mev.market.ticks":
            continue
        p = partitioner(row["key"].encode(), list(range(partitions)), list(range(partitions)))
        total[p] = total.get(p, 0) + 1
        recent[p] = recent.get(p, 0) + (row["ts_ms"] >= window_from_ms)
    busiest = max(recent, key=recent.__getitem__)
    assert recent[busiest] < total[busiest], "the window must not reach back to the start"
    return recent[busiest]


def _close(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where ``a`` and ``b`` differ (floats beyond 1e-9 relative)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.kills_worker
@pytest.mark.parametrize("restore", [True, False], ids=["restored", "cold"])
def test_scores_after_kill_9_match_an_uninterrupted_run(
    env: Env, start_worker, tmp_path: Path, restore: bool
) -> None:
    deadline = time.monotonic() + BUDGET_S

    def left(wanted: float) -> float:
        return max(1.0, min(wanted, deadline - time.monotonic()))

    start_ms, cut_ms, window_from_ms = Times.now()
    config = _config(tmp_path)
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "120", "--duration", str(DURATION_S),
                "--start-ms", str(start_ms), "--record", str(recording))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    split_at(recording, cut_ms, first, second)
    window = _replay_window(first, partitions=4, window_from_ms=window_from_ms)
    worker_env = {
        # a partition counts as idle only after 20 s: the start-up replay stalls the host for seconds,
        # and a shorter limit would let the first partition read after it run ahead of the others
        "MEVRISK_BAR_MS": "1000", "MEVRISK_IDLE_HEARTBEAT_SECS": "600", "MEVRISK_IDLE_SOURCE_SECS": "20",
        "MEVRISK_CONFIG_DIR": str(config), "MEVRISK_MODEL_CHECKPOINT_SECS": "20",
        # risk.models is the models' checkpoint when state checkpoints are off (with them on, the
        # state checkpoint holds the models: tests/integration/test_state_recovery.py)
        "MEVRISK_STATE_CHECKPOINT_SECS": "0",
    }

    env.mevrisk("replay", str(first))
    worker = start_worker(**worker_env)

    def checkpoints() -> dict[str, int]:
        got = run(_read_models(env))
        secret = TEST_CHECKPOINT_SECRET.encode()
        return {key: Checkpoint.from_bytes(key, value, secret).as_of_ms for key, value in got}

    try:
        as_of = wait_until(
            lambda: (c := checkpoints()) and len(c) >= 3 and min(c.values()) >= start_ms + 80_000 and c,
            left(150), "checkpoints of the tick models and both portfolios past 80 s")
        wait_until(lambda: worker.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 10_000, left(120),
                   "the first worker to process most of the first half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.state()}") from None
    worker.stop(signal.SIGKILL)
    as_of = checkpoints()  # the last ones written before the crash

    restarted = start_worker(**worker_env, MEVRISK_MARKET_REPLAY_MESSAGES=str(window),
                             MEVRISK_MODEL_RESTORE="true" if restore else "false")
    try:
        wait_until(lambda: restarted.metric("mevrisk_watermark_seconds") * 1000 >= cut_ms - 5_000, left(150),
                   "the restarted worker to recover the first half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{restarted.state()}") from None
    env.mevrisk("replay", str(second))
    end_ms = start_ms + (DURATION_S - 5) * 1000
    try:
        wait_until(lambda: restarted.metric("mevrisk_watermark_seconds") * 1000 >= end_ms, left(180),
                   "the restarted worker to process the second half")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{restarted.state()}") from None
    log = restarted.log.read_text(errors="replace")
    assert ("restored ticks as_of_ms=" in log) is restore, log[-2000:]
    with urllib.request.urlopen(f"http://127.0.0.1:{restarted.web_port}/api/v1/health", timeout=10) as r:
        health = orjson.loads(r.read())
    rows = [orjson.loads(line) for line in recording.read_bytes().splitlines()]
    ticks_up_to_watermark = sum(
        1 for row in rows if row["topic"] == "mev.market.ticks" and row["ts_ms"] <= health["watermark_ms"]
    )
    tick_samples = health["models"]["ticks"]["samples_seen"]
    if restore:  # the tick models know every tick, those before the replay window included
        assert tick_samples == ticks_up_to_watermark
    else:
        assert tick_samples < ticks_up_to_watermark - 1000

    options = PipelineOptions(config_dir=config, bar_ms=1000, allowed_lateness_ms=2000)
    reference = {(s["portfolio"], s["ts_ms"]): s["anomaly"]
                 for s in replay(read_lines(recording), options).of("risk.snapshots")}
    live = run(consume(env.bootstrap, env.topic("risk.snapshots"), 100_000, timeout=10))
    after = {(s["portfolio"], s["ts_ms"]): s["anomaly"] for s in live
             if as_of[f"portfolio:{s['portfolio']}"] < s["ts_ms"] <= end_ms}
    after_crash = [k for k in after if k[1] > cut_ms]
    assert len(after_crash) > 80, f"snapshots published after the restart: {len(after_crash)}"
    differences = {k: d for k, v in sorted(after.items()) if (d := _close(v, reference[k]))}
    if restore:
        first_difference = next(iter(differences.items()), None)
        assert not differences, f"{len(differences)} of {len(after)} differ, first: {first_difference}"
    else:
        forgotten = [k for k in differences if k[1] > cut_ms]
        assert len(forgotten) > len(after_crash) // 2, "without the checkpoint the models forget"


async def _read_models(env: Env) -> list[tuple[str, bytes]]:
    """Latest record per key of ``risk.models``."""
    from streams.model_store import read_checkpoints

    latest: dict[str, bytes] = {}
    for key, value in await read_checkpoints(env.bootstrap, env.topic("risk.models")):
        if value is not None:
            latest[key] = value
    return list(latest.items())

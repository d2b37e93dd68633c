"""The latency defaults (50 ms allowed lateness, partitions read to their end released after 50 ms
without a record, price ticks re-marking their holders between bars) keep the Kafka path equal to
the offline replay when the input arrives in real time, as bots send it. The other equality tests
replay faster than real time and keep the earlier watermark (tests/integration/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.settings import Settings
from tests.integration.conftest import Env, consume, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
DEFAULTS = {  # the shipped defaults, over the conftest's pinned watermark
    "MEVRISK_ALLOWED_LATENESS_MS": str(Settings.model_fields["allowed_lateness_ms"].default),
    "MEVRISK_HEAD_IDLE_MS": str(Settings.model_fields["head_idle_ms"].default),
}


def test_real_time_input_at_the_latency_defaults_matches_the_offline_replay(
        env: Env, start_worker, tmp_path: Path) -> None:
    assert DEFAULTS == {"MEVRISK_ALLOWED_LATENESS_MS": "50", "MEVRISK_HEAD_IDLE_MS": "50"}
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "17", "--rate", "150", "--duration", "45", "--start-ms", str(START_MS),
                "--incident", "flash-crash@15s/10s", "--record", str(recording), **DEFAULTS)
    offline_path = tmp_path / "offline-alerts.jsonl"
    env.mevrisk("replay", "--offline", str(recording), "--bar-ms", "1000", "--out", str(offline_path),
                **DEFAULTS)
    offline = [orjson.loads(line) for line in offline_path.read_bytes().splitlines()]
    assert any(a["transition"] == "firing" for a in offline), "the flash crash raises alerts offline"

    worker = start_worker(MEVRISK_BAR_MS="1000", **DEFAULTS)
    env.mevrisk("replay", str(recording), "--pace", "realtime", timeout=180, **DEFAULTS)
    horizon = max(orjson.loads(x)["ts_ms"] for x in recording.read_bytes().splitlines() if x.strip())
    expected = [a for a in offline if a["ts_ms"] <= horizon - 1_000]

    def live_alerts() -> list[dict]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), len(expected), timeout=5))
        return [a for a in got if a["ts_ms"] <= horizon - 1_000]

    live = wait_until(lambda: (a := live_alerts()) and len(a) >= len(expected) and a, 90,
                      "the worker's alert events")
    late = worker.metric("mevrisk_pipeline_events", kind="late")
    key = ("event_id", "transition", "ts_ms", "severity")

    def by_fingerprint(alerts: list[dict]) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for a in alerts:
            out.setdefault(a["fingerprint"], []).append(tuple(a[k] for k in key))
        return out

    # a record that reaches the worker more than the allowed lateness after a newer one of another
    # partition is applied late (counted, never dropped): on a loaded machine some are, and the alert
    # events must not change
    assert by_fingerprint(live) == by_fingerprint(expected), f"late events: {late}"
    print(f"late events at the defaults: {late:.0f} of {len(recording.read_bytes().splitlines())}")
    worker.assert_healthy()

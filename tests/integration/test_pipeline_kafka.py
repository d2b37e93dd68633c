"""Real broker, real worker: the simulator's flash crash moves VaR and rating, and the alert
events that come out of Kafka are exactly those of the offline replay of the same input."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import Env, consume, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LATENESS_MS = 2_000


def _record(env: Env, path: Path, seed: int, duration_s: int, incident: str) -> None:
    env.mevrisk(
        "simulate", "--seed", str(seed), "--rate", "150", "--duration", str(duration_s),
        "--start-ms", str(START_MS), "--incident", incident, "--record", str(path),
    )


def _max_input_ts(path: Path) -> int:
    return max(orjson.loads(line)["ts_ms"] for line in path.read_bytes().splitlines() if line.strip())


def test_flash_crash_alerts_match_offline_replay(env: Env, start_worker, tmp_path: Path) -> None:
    recording = tmp_path / "input.jsonl"
    _record(env, recording, seed=11, duration_s=120, incident="flash-crash@60s/20s")
    offline_path = tmp_path / "offline-alerts.jsonl"
    env.mevrisk("replay", "--offline", str(recording), "--bar-ms", "1000", "--out", str(offline_path))
    offline = [orjson.loads(line) for line in offline_path.read_bytes().splitlines()]
    assert offline, "the flash crash must raise at least one alert offline"

    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="3")
    env.mevrisk("replay", str(recording), "--pace", "fast")
    horizon = _max_input_ts(recording)
    expected = [a for a in offline if a["ts_ms"] <= horizon - LATENESS_MS]

    def live_alerts() -> list[dict]:
        got = run(consume(env.bootstrap, env.topic("risk.alerts"), len(expected), timeout=5))
        return [a for a in got if a["ts_ms"] <= horizon - LATENESS_MS]

    try:
        live = wait_until(lambda: (a := live_alerts()) and len(a) >= len(expected) and a, 90,
                          "the worker's alert events")
    except AssertionError:
        state = [line for line in worker.metrics_text().splitlines() if line.startswith("mevrisk_")]
        raise AssertionError(f"expected {len(expected)} alert events; worker state: {state}") from None
    key = ("event_id", "id", "transition", "ts_ms", "severity", "startsAt")

    def by_fingerprint(alerts: list[dict]) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for a in alerts:
            out.setdefault(a["fingerprint"], []).append(tuple(a[k] for k in key))
        return out

    assert by_fingerprint(live) == by_fingerprint(expected)
    worker.assert_healthy()
    firing = sum(1 for a in expected if a["transition"] == "firing")
    assert sum(
        worker.metric("mevrisk_alert_events_total", transition="firing", severity=sev)
        for sev in ("info", "warning", "high", "critical")
    ) >= firing
    # the first portfolio alert (the asset scope's PriceJump/LiquidityDrop come first, without one)
    portfolio = next(a["labels"]["portfolio"] for a in expected if "portfolio" in a["labels"])
    assert worker.metric("mevrisk_portfolio_var_usd", portfolio=portfolio, confidence="0.99") > 0
    assert 0.0 <= worker.metric("mevrisk_portfolio_alert_probability", portfolio=portfolio) <= 1.0
    assert "mevrisk_portfolio_anomaly_score" in worker.metrics_text()


def test_flash_crash_raises_var_and_rating(env: Env, start_worker, tmp_path: Path) -> None:
    recording = tmp_path / "input.jsonl"
    _record(env, recording, seed=5, duration_s=100, incident="flash-crash@50s/20s")
    worker = start_worker(MEVRISK_BAR_MS="1000")
    env.mevrisk("replay", str(recording), "--pace", "fast")
    crash_ms = START_MS + 50_000

    def snapshots() -> list[dict]:
        # every portfolio published past the crash (its partition may be read before the others')
        got = run(consume(env.bootstrap, env.topic("risk.snapshots"), 100_000, timeout=5))
        portfolios = {s["portfolio"] for s in got}
        done = {s["portfolio"] for s in got if s["ts_ms"] >= crash_ms + 20_000}
        return got if len(portfolios) >= 2 and done == portfolios else []

    snaps = wait_until(snapshots, 120, "snapshots past the crash")
    rank = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}
    rating_rose, checked = [], 0
    for portfolio in {s["portfolio"] for s in snaps}:
        mine = [s for s in snaps if s["portfolio"] == portfolio]
        before = [s for s in mine if crash_ms - 20_000 <= s["ts_ms"] < crash_ms]
        after = [s for s in mine if crash_ms + 3_000 <= s["ts_ms"] <= crash_ms + 20_000]
        if not before or not after:
            continue
        var_before = max(s["var_99_usd"] for s in before)
        var_after = max(s["var_99_usd"] for s in after)
        assert var_after > 2 * var_before, (portfolio, var_before, var_after)
        checked += 1
        if max(rank[s["rating"]] for s in after) > max(rank[s["rating"]] for s in before):
            rating_rose.append(portfolio)
    assert checked >= 2, "both simulated portfolios hold positions through the crash"
    late = [line for line in worker.metrics_text().splitlines() if line.startswith("mevrisk_pipeline_events")]
    assert rating_rose, f"the crash raises the rating of at least one portfolio; {late}"

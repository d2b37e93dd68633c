"""Real broker, real worker: ``mevrisk report daily`` read from the topics gives the figures of the
same day built offline from the recording, and the worker archives the day to ``risk.reports``
when the next day's events arrive (the archive then equals the report).

Two recordings: 2025-12-01 from 00:00:00 (90 s) and 2025-12-02 from 00:00:30 (30 s); the pipeline
crosses the night in O(1) and the first snapshot of 12-02 closes 12-01.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Env, consume, run, wait_idle, wait_until

pytestmark = pytest.mark.integration

DAY1_MS = 1764547200000  # 2025-12-01T00:00:00Z
DAY2_MS = DAY1_MS + 86_400_000 + 30_000
COMPARED = ("snapshots", "figures", "limits", "alerts", "mttx", "controls", "backtest", "stress")


def _report(env: Env, out: Path, *extra: str) -> dict[str, Any]:
    env.mevrisk("report", "daily", "--date", "2025-12-01", "--format", "json", "--out", str(out),
                "--bar-ms", "1000", *extra, timeout=300)
    return json.loads((out / "report-2025-12-01.json").read_text())


def test_report_from_topics_equals_offline_and_the_day_is_archived(env: Env, start_worker,
                                                                   tmp_path: Path) -> None:
    day1, day2 = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl"
    env.mevrisk("simulate", "--seed", "5", "--rate", "50", "--duration", "90", "--start-ms", str(DAY1_MS),
                "--incident", "flash-crash@40s/20s", "--record", str(day1))
    env.mevrisk("simulate", "--seed", "6", "--rate", "50", "--duration", "30", "--start-ms", str(DAY2_MS),
                "--record", str(day2))
    both = tmp_path / "both.jsonl"
    both.write_bytes(day1.read_bytes() + day2.read_bytes())
    offline = _report(env, tmp_path / "offline", "--replay", str(both))
    assert offline["portfolios"] and any(p["alerts"] for p in offline["portfolios"])

    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="3")
    env.mevrisk("replay", str(day1), "--pace", "fast")
    env.mevrisk("replay", str(day2), "--pace", "fast")

    def archived() -> list[dict[str, Any]] | None:
        got = run(consume(env.bootstrap, env.topic("risk.reports"), 2, timeout=5))
        return got if len(got) >= 2 else None

    records = wait_until(archived, 180, "the worker to archive 2025-12-01 to risk.reports")
    assert sorted(r["key"].decode() for r in records) == ["2025-12-01|alpha", "2025-12-01|beta"]
    wait_idle(env, ["risk.audit"], settle_s=5)  # the audit is verified whole (snapshots never settle)
    live = _report(env, tmp_path / "live")
    assert live["source"] == "topics"
    broken = [(c["stream"], c["first_bad_seq"], c["reason"]) for c in live["audit"]["chains"] if not c["ok"]]
    assert live["audit"]["ok"] is True, broken
    assert [p["portfolio"] for p in live["portfolios"]] == [p["portfolio"] for p in offline["portfolios"]]
    for got, want in zip(live["portfolios"], offline["portfolios"], strict=True):
        for field in COMPARED:
            assert got[field] == want[field], (got["portfolio"], field)
        assert [s["net_pnl_usd"] for s in got["strategies"]] == [s["net_pnl_usd"] for s in want["strategies"]]
    for record in records:
        section = record["portfolios"][0]
        want = next(p for p in live["portfolios"] if p["portfolio"] == record["portfolio"])
        for field in COMPARED:
            assert section[field] == want[field], (record["portfolio"], field)
    worker.assert_healthy()

"""A daily report of a recorded day with known incidents, rendered to PDF and then to PNG by
pdftoppm: MTTA/MTTR, breach count and traffic-light zone checked against figures this test
computes itself from the raw records (not with the report's code).

The day: 6 minutes of the simulator from 2025-12-01T00:00Z with a flash crash, a stalled price
feed and bad messages. An operator acknowledges every alert of the portfolios 20 s + 5 s x n after
it fired and resolves the first one by hand; the recording then goes through the offline pipeline
with those actions, as ``mevrisk report daily --replay`` does.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.assembly import PipelineOptions
from agents.reports.model import ReportOptions
from agents.reports.render import build_daily_report
from agents.reports.source import records_from_recording
from streams.sim.incidents import Incident
from streams.sim.publisher import run_simulation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PDFTOPPM = shutil.which("pdftoppm")
PDFTOTEXT = shutil.which("pdftotext")
if PDFTOPPM is None or PDFTOTEXT is None:
    pytest.skip(
        "pdftoppm/pdftotext not found: apt-get install poppler-utils (make system-deps)",
        allow_module_level=True,
    )

DATE = "2025-12-01"
START_MS = 1764547200000
BAR_MS = 1000
RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}


@pytest.fixture(scope="module")
def recorded_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    recording = tmp / "day.jsonl"
    incidents = [
        Incident.parse("flash-crash@60s/20s"),
        Incident.parse("feed-stall@150s/30s"),
        Incident.parse("bad-messages@200s/5s"),
    ]
    asyncio.run(
        run_simulation(
            seed=11,
            rate_eps=60,
            duration_s=360,
            incidents=incidents,
            bootstrap=None,
            pace="fast",
            start_ms=START_MS,
            record_path=recording,
            controls_topic=None,
        )
    )
    options = PipelineOptions(bar_ms=BAR_MS)
    first = records_from_recording(recording, options)
    firings = [a for a in first["alerts"] if a["transition"] == "firing" and a["scope"] == "portfolio"]
    assert firings, "the incidents must fire portfolio alerts"
    actions = [
        {
            "kind": "acknowledge",
            "alert_id": a["id"],
            "actor": f"officer-{n % 2}",
            "comment": "seen",
            "ts_ms": a["ts_ms"] + 20_000 + 5_000 * n,
        }
        for n, a in enumerate(firings)
    ]
    actions.append(
        {
            "kind": "resolve",
            "alert_id": firings[0]["id"],
            "actor": "officer-9",
            "comment": "handled",
            "ts_ms": firings[0]["ts_ms"] + 40_000,
        }
    )
    for order, action in enumerate(actions):
        action["audit_order"] = order
    records = records_from_recording(recording, options, operator=actions)
    return {"records": records, "dir": tmp}


def _strategy_homes(stats: list[dict[str, Any]]) -> dict[str, str]:
    """Strategy -> portfolio, as the raw ``mev.strategy.stats`` records name it."""
    return {s["strategy"]: s["portfolio"] for s in stats}


def _independent_mttx(alert_events: list[dict[str, Any]], portfolio: str,
                      homes: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per highest severity: mean seconds firing -> first ack, firing -> first resolution, over the
    alerts of the portfolio and of its strategies (``homes``, from the raw stats): a strategy's
    alert belongs to the portfolio it trades for (the flash crash raises reverts, and the revert
    storm rule fires on the portfolios' strategies)."""
    fired: dict[str, int] = {}
    ack: dict[str, int] = {}
    res: dict[str, int] = {}
    sev: dict[str, str] = {}
    for e in alert_events:
        owner = e["entity_id"] if e["scope"] == "portfolio" else (
            homes.get(e["entity_id"]) if e["scope"] == "strategy" else None)
        if owner != portfolio:
            continue
        i = e["id"]
        if e["transition"] == "firing":
            fired.setdefault(i, e["ts_ms"])
        if i not in fired:
            continue
        if i not in sev or RANK[e["severity"]] > RANK[sev[i]]:
            sev[i] = e["severity"]
        if e["transition"] == "acknowledged":
            ack.setdefault(i, e["ts_ms"])
        if e["transition"] == "resolved":
            res.setdefault(i, e["ts_ms"])
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"tta": [], "ttr": [], "n": 0})
    for i, t0 in fired.items():
        row = out[sev[i]]
        row["n"] += 1
        if i in ack:
            row["tta"].append((ack[i] - t0) / 1000)
        if i in res:
            row["ttr"].append((res[i] - t0) / 1000)
    return {
        s: {
            "n": r["n"],
            "mtta": sum(r["tta"]) / len(r["tta"]) if r["tta"] else None,
            "mttr": sum(r["ttr"]) / len(r["ttr"]) if r["ttr"] else None,
        }
        for s, r in out.items()
    }


def _independent_breaches(snapshots: list[dict[str, Any]], portfolio: str, limit: float) -> int:
    values = [
        s["var_95_usd"]
        for s in sorted(snapshots, key=lambda s: s["ts_ms"])
        if s.get("portfolio") == portfolio and s.get("var_95_usd") is not None
    ]
    return sum(1 for prev, cur in zip([0.0, *values], values, strict=False) if cur > limit >= prev)


def _independent_zone(snapshots: list[dict[str, Any]], portfolio: str) -> str:
    last = max(
        (s for s in snapshots if s.get("portfolio") == portfolio and "backtest" in s),
        key=lambda s: s["ts_ms"],
    )
    exceptions = last["backtest"]["zone_exceptions"]
    return "green" if exceptions < 5 else "yellow" if exceptions < 10 else "red"


def _fmt_secs(value: float) -> str:
    s = round(value)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return " ".join(p for p in (f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s") if p)


def test_report_figures_match_the_raw_records(recorded_day: dict[str, Any]) -> None:
    records = recorded_day["records"]
    out = build_daily_report(
        records, DATE, None, ["pdf", "json"], ReportOptions(bar_ms=BAR_MS, source="test")
    )
    model = orjson.loads(out["json"])
    pdf = recorded_day["dir"] / "report.pdf"
    pdf.write_bytes(out["pdf"])

    pages = subprocess.run(
        [PDFTOPPM, "-r", "40", "-png", str(pdf), str(recorded_day["dir"] / "page")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert pages.returncode == 0
    pngs = sorted(Path(recorded_day["dir"]).glob("page*.png"))
    assert len(pngs) >= 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2_000 for p in pngs)
    text = subprocess.run(
        [PDFTOTEXT, "-layout", str(pdf), "-"], check=True, capture_output=True, timeout=120
    ).stdout.decode()
    raw_text = subprocess.run(
        [PDFTOTEXT, "-raw", str(pdf), "-"], check=True, capture_output=True, timeout=120
    ).stdout.decode()

    portfolios = [p["portfolio"] for p in model["portfolios"]]
    assert portfolios == sorted({s["portfolio"] for s in records["snapshots"]})
    acked_somewhere = False
    homes = _strategy_homes(records["strategy_stats"])
    for section in model["portfolios"]:
        name = section["portfolio"]
        expected = _independent_mttx(records["alerts"], name, homes)
        got = section["mttx"]["by_severity"]
        assert set(got) == set(expected)
        for severity, want in expected.items():
            assert got[severity]["alerts"] == want["n"]
            for key, field in (("mtta", "mtta_s"), ("mttr", "mttr_s")):
                if want[key] is None:
                    assert got[severity][field] is None
                else:
                    assert got[severity][field] == pytest.approx(want[key])
                    assert _fmt_secs(want[key]) in text
            acked_somewhere |= want["mtta"] is not None
        var_limit = next(u for u in section["limits"] if u["limit"] == "var_95_usd")
        assert var_limit["breach_count"] == _independent_breaches(records["snapshots"], name, 10_000.0)
        zone = _independent_zone(records["snapshots"], name)
        assert section["backtest"]["zone"] == zone
        assert f"Traffic-light zone at the end of the day: {zone}" in " ".join(text.split())
    assert acked_somewhere, "the operator's acknowledgements must reach the report"
    assert any(u["breach_count"] > 0 for s in model["portfolios"] for u in s["limits"]), (
        "the flash crash must breach a limit"
    )
    assert "officer-0" in text and "officer-9" in text
    # the stalled feed and the bad messages
    assert model["data_quality"]["stale_feed_minutes"].get("price-oracle", 0) > 0
    assert model["data_quality"]["dead_letters"]["total"] == 8
    assert model["audit"]["ok"] is True
    for chain in model["audit"]["chains"]:
        assert chain["head_hash"] in "".join(raw_text.split())

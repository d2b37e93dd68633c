"""The day archive (risk.reports) against the report built from the same records, and the
renderers: self-contained HTML, escaped strings, JSON by the schema, PDF bytes, CLI files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from agents.reports.archive import DayArchive, merge_archived
from agents.reports.day import day_bounds
from agents.reports.errors import ReportError
from agents.reports.model import ReportOptions, build_model
from agents.reports.render import build_daily_report, parse_formats
from streams.cli import main
from tests.unit.reports.test_model import SCHEMA, _day_records, alert, snapshot

START, END = day_bounds("2025-12-01")
COMPARED = (
    "snapshots",
    "first_ts_ms",
    "last_ts_ms",
    "figures",
    "limits",
    "alerts",
    "mttx",
    "controls",
    "backtest",
    "stress",
    "chart",
)


def _outputs(records: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """The records as the pipeline would publish them: one stream in event-time order."""
    rows = [("risk.snapshots", s["portfolio"], s) for s in records["snapshots"]]
    rows += [("risk.alerts", a["id"], a) for a in records["alerts"]]
    rows += [("risk.controls", c["scope"], c) for c in records["controls"]]
    rows += [("risk.audit", r["stream"], r) for r in records["audit"]]
    return sorted(rows, key=lambda r: r[2]["ts_ms"])


def test_archive_of_a_closed_day_equals_the_report_of_its_records() -> None:
    records = _day_records()  # ends with a snapshot of the next day, within the grace of 2 bars
    options = ReportOptions(bar_ms=60_000, source="archive")
    archive = DayArchive(options)
    outputs = _outputs(records)
    # one batch out of event-time order (as a bar close publishes portfolio after portfolio)
    outputs = [*outputs[-1:], *outputs[:-1]]
    assert archive.observe(outputs) == []
    archived = archive.observe([("risk.snapshots", "beta", snapshot(END + 120_000, "beta"))])
    assert [key for _, key, _ in archived] == ["2025-12-01|alpha", "2025-12-01|beta"]
    for topic, key, value in archived:
        assert topic == "risk.reports"
        jsonschema.validate(value, SCHEMA, cls=jsonschema.Draft202012Validator)
        name = key.split("|")[1]
        direct = build_model(records, "2025-12-01", name, options)
        assert value["portfolio"] == name and value["ts_ms"] == END
        for field in COMPARED:
            assert value["portfolios"][0][field] == direct["portfolios"][0][field], field
        assert value["audit"]["chains"][0]["head_hash"] == records["audit"][-1]["hash"]
        assert value["audit"]["ok"] is None  # heads as written, not verified by the worker
    merged = merge_archived([v for _, _, v in archived])
    assert merged is not None and [p["portfolio"] for p in merged["portfolios"]] == ["alpha", "beta"]
    assert merge_archived([v for _, _, v in archived], "beta")["portfolios"][0]["portfolio"] == "beta"  # type: ignore[index]
    assert merge_archived([], "beta") is None


def test_a_day_not_seen_from_its_start_is_not_archived() -> None:
    archive = DayArchive(ReportOptions(bar_ms=60_000))
    late_start = [("risk.snapshots", "alpha", snapshot(START + 3_600_000, var_95_usd=1.0))]
    assert archive.observe(late_start) == []
    closed = archive.observe([("risk.snapshots", "alpha", snapshot(END + 1_000, var_95_usd=1.0)),
                              ("risk.snapshots", "alpha", snapshot(END + 200_000, var_95_usd=1.0))])
    assert closed == [] and archive.skipped == 1
    # the next day was seen from its start (an output of the day before): archived when it closes
    closed = archive.observe([("risk.snapshots", "alpha", snapshot(END + 86_600_000, var_95_usd=1.0))])
    assert [key for _, key, _ in closed] == ["2025-12-02|alpha"]
    assert archive.observe([("risk.snapshots", "alpha", snapshot(START, var_95_usd=1.0))]) == []
    assert archive.late == 1


def test_html_is_self_contained_and_escapes_what_the_records_say() -> None:
    records = _day_records()
    records["alerts"].append(
        alert(
            "x",
            "firing",
            START + 99,
            message="<script>alert(1)</script>",
            acknowledged_by='"><img src=http://evil.example/x>',
        )
    )
    records["alerts"].append(
        alert("x", "acknowledged", START + 100, acknowledged_by='"><img src=http://e.example>')
    )
    html = build_daily_report(records, "2025-12-01", None, "html")["html"].decode()
    assert "<script" not in html and "<img src=http" not in html
    assert "&lt;script&gt;" in html
    srcs = [chunk.split('"', 1)[0] for chunk in html.split('src="')[1:]]
    assert srcs and all(src.startswith("data:image/png;base64,") for src in srcs)
    assert "http://" not in html.replace("http://evil.example", "").replace("http://e.example", "")
    assert "<link" not in html and "@import" not in html


def test_json_is_canonical_and_pdf_is_a_pdf() -> None:
    records = _day_records()
    a = build_daily_report(records, "2025-12-01", "alpha", ["json", "pdf"])
    b = build_daily_report(records, "2025-12-01", "alpha", "json")
    assert a["json"] == b["json"]
    jsonschema.validate(orjson.loads(a["json"]), SCHEMA, cls=jsonschema.Draft202012Validator)
    assert a["pdf"].startswith(b"%PDF-") and len(a["pdf"]) > 10_000


def test_formats_are_checked() -> None:
    assert parse_formats("PDF, html,pdf") == ("pdf", "html")
    with pytest.raises(ReportError, match="docx"):
        parse_formats("html,docx")
    with pytest.raises(ReportError):
        parse_formats("")


def test_cli_report_daily_from_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "day.jsonl"
    assert (
        main(
            [
                "simulate",
                "--seed",
                "3",
                "--rate",
                "20",
                "--duration",
                "60",
                "--pace",
                "fast",
                "--start-ms",
                str(START),
                "--record",
                str(recording),
            ]
        )
        == 0
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "report",
                "daily",
                "--date",
                "2025-12-01",
                "--replay",
                str(recording),
                "--bar-ms",
                "1000",
                "--format",
                "json,html",
                "--out",
                str(out),
                "--portfolio",
                "alpha",
            ]
        )
        == 0
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == ["report-2025-12-01-alpha.html", "report-2025-12-01-alpha.json"]
    model = json.loads((out / "report-2025-12-01-alpha.json").read_text())
    assert [p["portfolio"] for p in model["portfolios"]] == ["alpha"]
    assert model["portfolios"][0]["snapshots"] > 60 and model["source"] == "replay of day.jsonl"
    assert model["audit"]["ok"] is True
    assert main(["report", "daily", "--date", "2025-31-12", "--replay", str(recording)]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err

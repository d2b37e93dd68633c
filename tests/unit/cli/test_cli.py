"""The core-backed CLI commands, run in-process on small files made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from agents.audit.chain import AuditChain
from streams.cli import main


def _prices(path: Path, rows: int = 320, seed: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    eth = 3000 * np.exp(np.cumsum(rng.normal(0, 0.02, rows)))
    btc = 60000 * np.exp(np.cumsum(rng.normal(0, 0.015, rows)))
    lines = ["date,ETH,WBTC"] + [f"2026-01-{1 + i // 24:02d}T{i % 24:02d},{e:.4f},{b:.4f}"
                                 for i, (e, b) in enumerate(zip(eth, btc, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_var_prints_the_documented_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = _prices(tmp_path / "p.csv")
    positions = tmp_path / "pos.json"
    positions.write_text(json.dumps({"ETH": 1_000_000, "WBTC": -250_000}))
    assert main(["var", "--prices", str(prices), "--positions", str(positions), "--window", "250"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_scenarios"] == 250 and out["window"] == 250 and out["method"] == "historical"
    assert 0 < out["var_95"] < out["var_99"] <= out["es_99"]
    assert out["es_95"] >= out["var_95"]
    assert abs(sum(out["component_var"].values()) - out["var_99"]) < 1e-6 * out["var_99"]


def test_backtest_var_prints_a_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = _prices(tmp_path / "p.csv")
    positions = tmp_path / "pos.json"
    positions.write_text(json.dumps({"ETH": 500_000}))
    assert main(["backtest-var", "--prices", str(prices), "--positions", str(positions),
                 "--window", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["observations"] == 320 - 1 - 60
    assert out["zone"] in {"green", "yellow", "red"}
    assert 0.0 <= out["kupiec_pvalue"] <= 1.0


def test_unknown_asset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = _prices(tmp_path / "p.csv")
    positions = tmp_path / "pos.json"
    positions.write_text(json.dumps({"DOGE": 1.0}))
    assert main(["var", "--prices", str(prices), "--positions", str(positions)]) == 2
    assert "DOGE" in capsys.readouterr().err


def test_rules_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", "deploy/config/rules.yaml"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: Broken\n    scope: portfolio\n    expr: 'snapshot.var_95_usd >'\n"
                   "    severity: high\n")
    assert main(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "Broken" in err


def test_audit_verify_detects_tampering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain = AuditChain("risk")
    records = [chain.append("alert", {"n": i}, 1_000 + i) for i in range(5)]
    good = tmp_path / "audit.jsonl"
    good.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    assert main(["audit", "verify", "--file", str(good)]) == 0
    records[2]["payload"]["n"] = 99
    bad = tmp_path / "tampered.jsonl"
    bad.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    assert main(["audit", "verify", "--file", str(bad)]) == 1
    assert "BROKEN at seq 2" in capsys.readouterr().out

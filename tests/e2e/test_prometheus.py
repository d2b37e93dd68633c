"""A real Prometheus (Debian's ``prometheus``) scrapes a real worker fed by the simulator.

The test derives Prometheus' configuration from ``deploy/prometheus/prometheus.yml``: the same
jobs, the same rule files (``deploy/prometheus/rules``), with the file_sd target lists pointing
at the live worker, 1 s intervals and a storage directory in ``tmp_path``. It then reads our
headline metrics back through Prometheus' HTTP API, checks that the rules load and evaluate,
that every expression of the Grafana dashboard runs, and that the worker-down alert starts
when the worker stops. Skipped only when the binary is not installed (``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from streams.settings import REPO_ROOT
from tests.integration.conftest import (  # noqa: F401 - fixtures
    Env,
    Worker,
    env,
    free_port,
    start_worker,
    wait_until,
    worker_watch,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(420)]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROM_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "mevrisk.json"
START_MS = 1_767_225_600_000
INPUT_TOPICS = ("mev.market.ticks", "mev.positions", "mev.strategy.stats")

if not Path(PROMETHEUS).exists():
    pytest.skip("Prometheus binary not found: apt-get install prometheus", allow_module_level=True)


class Prometheus:
    """Client of a running Prometheus' HTTP API."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector query; an expression Prometheus rejects raises (HTTP 400)."""
        return list(self.get("/api/v1/query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def targets(self, job: str) -> list[dict[str, Any]]:
        return [t for t in self.get("/api/v1/targets")["activeTargets"] if t["labels"]["job"] == job]


def derived_config(tmp_path: Path, worker_port: int, prometheus_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with its target lists and rules made absolute for this run."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / pattern) for pattern in config["rule_files"]]
    targets = {
        "targets/mevrisk-workers.yml": f"127.0.0.1:{worker_port}",
        "targets/alertmanagers.yml": f"127.0.0.1:{free_port()}",  # nothing listens: no alert fires here
    }
    for job in config["scrape_configs"] + config["alerting"]["alertmanagers"]:
        job.pop("scrape_interval", None)
        for sd in job.get("file_sd_configs", []):
            files = []
            for name in sd["files"]:
                path = tmp_path / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump([{"targets": [targets[name]]}]))
                files.append(str(path))
            sd["files"] = files
        for static in job.get("static_configs", []):  # the self-scrape job
            static["targets"] = [f"127.0.0.1:{prometheus_port}"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def worker(start_worker) -> Iterator[Worker]:  # noqa: F811 - the imported fixture
    """A worker with 1 s bars; watched for crashes by ``start_worker``."""
    worker = start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="2")
    yield worker


@pytest.fixture
def prometheus(worker: Worker, tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    config = derived_config(tmp_path / "prometheus", worker.web_port, port)
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    client = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        def ready() -> bool:
            assert proc.poll() is None, "Prometheus exited: " + log.read_text()
            with urllib.request.urlopen(f"{client.url}/-/ready", timeout=5) as resp:
                return resp.status == 200

        wait_until(ready, 60, "Prometheus /-/ready")
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def feed(test_env: Env, tmp_path: Path) -> None:
    """40 s of simulated market, positions and strategy stats with a flash crash, replayed fast."""
    recording = tmp_path / "input.jsonl"
    test_env.mevrisk("simulate", "--seed", "5", "--rate", "150", "--duration", "40",
                     "--start-ms", str(START_MS), "--incident", "flash-crash@20s/10s",
                     "--record", str(recording))
    test_env.mevrisk("replay", str(recording), "--pace", "fast")


def worker_portfolios(worker: Worker) -> set[str]:
    pattern = r'^mevrisk_portfolio_var_usd\{[^}]*portfolio="([^"]+)"'
    return set(re.findall(pattern, worker.metrics_text(), re.M))


def test_prometheus_scrapes_a_live_worker(env: Env, worker: Worker, prometheus: Prometheus,  # noqa: F811
                                          tmp_path: Path) -> None:
    instance = f"127.0.0.1:{worker.web_port}"

    def target_up() -> list[dict[str, Any]]:
        return [t for t in prometheus.targets("mevrisk") if t["health"] == "up"]

    (target,) = wait_until(target_up, 90, "the worker target up in /api/v1/targets")
    assert target["scrapeUrl"] == f"http://{instance}/metrics"
    assert target["labels"]["instance"] == instance and target["lastError"] == ""

    feed(env, tmp_path)

    # the headline gauges of every portfolio the worker knows reach Prometheus
    var_99 = wait_until(lambda: prometheus.query('mevrisk_portfolio_var_usd{confidence="0.99"} > 0'), 90,
                        "a positive VaR 99 in Prometheus (the first bars have no return history)")
    assert all(s["metric"]["instance"] == instance and s["metric"]["job"] == "mevrisk" for s in var_99)
    portfolios = wait_until(lambda: worker_portfolios(worker) == set(
        prometheus.get("/api/v1/label/portfolio/values", **{"match[]": "mevrisk_portfolio_var_usd"})
    ) and worker_portfolios(worker), 30, "the same portfolios in the worker and in Prometheus")
    assert len(portfolios) >= 2  # the simulator trades two portfolios
    for portfolio in portfolios:
        ratings = prometheus.query(f'mevrisk_portfolio_rating{{portfolio="{portfolio}"}}')
        assert len(ratings) == 1 and float(ratings[0]["value"][1]) in {0, 1, 2, 3}, ratings
        gross = prometheus.value(f'mevrisk_portfolio_exposure_usd{{portfolio="{portfolio}",measure="gross"}}')
        assert gross is not None and gross >= 0

    # Prometheus holds exactly the input count the worker exposes once the feed is consumed
    def accepted_by_worker() -> float:
        return sum(worker.metric("mevrisk_events_in_total", topic=t) for t in INPUT_TOPICS)

    wait_until(lambda: prometheus.value("sum(mevrisk_events_in_total)") == accepted_by_worker() > 0, 90,
               "Prometheus' mevrisk_events_in_total to equal the worker's")
    snapshots = prometheus.value('sum(mevrisk_outputs_total{topic="risk.snapshots"})')
    assert snapshots is not None and 0 < snapshots <= worker.metric("mevrisk_outputs_total",
                                                                    topic="risk.snapshots")

    # the deploy rules load and evaluate without error on the real metrics
    expected_groups = {g["name"]: len(g["rules"]) for path in sorted((PROM_DIR / "rules").glob("*.yml"))
                       for g in yaml.safe_load(path.read_text())["groups"]}

    def rules_evaluated() -> list[dict[str, Any]]:
        groups = prometheus.get("/api/v1/rules")["groups"]
        assert {g["name"]: len(g["rules"]) for g in groups} == expected_groups
        rules = [r for g in groups for r in g["rules"]]
        return rules if all(r["lastEvaluation"] > "2000" for r in rules) else []

    rules = wait_until(rules_evaluated, 30, "every deploy rule evaluated once")
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    recording_rule = 'topic:mevrisk_outputs:rate1m{topic="risk.snapshots"}'
    recorded = wait_until(lambda: prometheus.query(recording_rule), 30, recording_rule)
    assert len(recorded) == 1
    assert prometheus.query('ALERTS{alertname=~"MevRiskWorkerDown|MevRiskNoWorkers"}') == []

    # every expression of the Grafana dashboard runs; the headline stat panels show each portfolio
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for panel in panels:
        for target_ in panel["targets"]:
            expr = target_["expr"].replace("$portfolio", ".*").replace("$__rate_interval", "1m")
            result = prometheus.query(expr)  # raises on an expression Prometheus rejects
            if panel["type"] == "stat" and "mevrisk_portfolio_" in expr:
                assert {s["metric"]["portfolio"] for s in result} == portfolios, panel["title"]

    # a stopped worker is seen down and its alert starts (pending for the rule's `for: 1m`)
    worker.stop()

    def worker_down_alert() -> list[dict[str, Any]]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "MevRiskWorkerDown"]

    (alert,) = wait_until(worker_down_alert, 60, "MevRiskWorkerDown in /api/v1/alerts")
    assert alert["labels"] == {"alertname": "MevRiskWorkerDown", "instance": instance, "job": "mevrisk",
                               "severity": "critical"}
    assert alert["state"] in {"pending", "firing"}
    assert prometheus.targets("mevrisk")[0]["health"] == "down"

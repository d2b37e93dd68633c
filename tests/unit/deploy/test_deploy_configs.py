"""The operator configs in deploy/: Prometheus (promtool), its rules (promtool unit tests),
the Grafana dashboard and the Docker Compose file.

Every metric the rules and the dashboard name must be one the worker really exposes: the names
come from the project's own registries (``streams.metrics.REGISTRY`` and the notification
dispatcher's metrics), not from a list kept here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agents.notify.config import load_config
from agents.notify.delivery import Dispatcher
from streams import metrics
from streams.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "rules" / "tests").glob("*.yml"))
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: apt-get install prometheus (Debian's package ships it)"
)
#: series Prometheus makes itself for every target
PROMETHEUS_OWN = {"up"}


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- metric names ----------------------------------------------------------------------------


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Sample names a scrape of ``registry`` can carry (counters ``_total``, histograms ``_bucket``...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {family.name + suffix for family in registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


@pytest.fixture(scope="module")
def worker_metric_names() -> set[str]:
    """Everything the worker's /metrics can expose: streams.metrics plus the dispatcher's metrics,
    which the worker registers on the same registry when it starts notifying."""
    notify_registry = CollectorRegistry()
    Dispatcher(load_config(COMPOSE_DIR / "channels.yaml"), registry=notify_registry)
    return exposed_names(metrics.REGISTRY) | exposed_names(notify_registry)


def referenced_names(expr: str) -> set[str]:
    """Metric and recording-rule names in a PromQL expression (ours: ``mevrisk_*`` or with a colon).

    >>> sorted(referenced_names('sum by (topic) (rate(mevrisk_x_total{topic="a:b"}[$__rate_interval]))'))
    ['mevrisk_x_total']
    >>> sorted(referenced_names('topic:mevrisk_lag:sum > 10 and up{job="mevrisk"} == 1'))
    ['topic:mevrisk_lag:sum', 'up']
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not names
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    tokens = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
    return {t for t in tokens if t.startswith("mevrisk_") or ":" in t or t in PROMETHEUS_OWN}


def _datasource() -> dict[str, Any]:
    return dict(_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0])


def _rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in _yaml(path)["groups"]:
            yield from group["rules"]


def _dashboard_exprs(node: Any) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def test_the_registries_expose_the_headline_metrics(worker_metric_names: set[str]) -> None:
    # guards the name checks below against an empty or wrongly suffixed collection
    assert {"mevrisk_portfolio_var_usd", "mevrisk_outputs_total", "mevrisk_processing_seconds_bucket",
            "mevrisk_notifications_total", "mevrisk_notification_latency_seconds_count",
            } <= worker_metric_names
    assert "mevrisk_outputs" not in worker_metric_names


def test_rules_name_only_real_metrics_and_defined_recordings(worker_metric_names: set[str]) -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    unknown = {}
    for rule in _rules():
        names = referenced_names(rule["expr"])
        assert names, f"{rule.get('alert') or rule.get('record')}: names no metric"
        bad = {n for n in names if n not in worker_metric_names | recorded | PROMETHEUS_OWN}
        if bad:
            unknown[rule.get("alert") or rule.get("record")] = sorted(bad)
    assert unknown == {}


def test_rules_cover_what_an_operator_is_paged_for() -> None:
    by_name = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    expected = {"MevRiskWorkerDown", "MevRiskConsumerLagHigh", "MevRiskDeadLetters",
                "MevRiskNotificationFailures", "MevRiskNotificationsGivenUp", "MevRiskWatermarkStalled"}
    assert expected <= set(by_name)
    for name, rule in by_name.items():
        # severities the Alertmanager routes know (deploy/alertmanager/alertmanager.yml)
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name


def test_dashboard_names_only_real_metrics(worker_metric_names: set[str]) -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards"
    for path in DASHBOARDS:
        exprs = list(_dashboard_exprs(json.loads(path.read_text())))
        assert exprs, path
        used = set().union(*(referenced_names(e) for e in exprs))
        assert used - worker_metric_names - PROMETHEUS_OWN == set(), path.name


def test_dashboard_draws_the_risk_headline_and_the_pipeline() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "mevrisk.json").read_text())
    used = set().union(*(referenced_names(e) for e in _dashboard_exprs(dashboard)))
    assert {
        "mevrisk_portfolio_var_usd", "mevrisk_portfolio_es_usd", "mevrisk_portfolio_exposure_usd",
        "mevrisk_portfolio_rating", "mevrisk_portfolio_anomaly_score", "mevrisk_alert_events_total",
        "mevrisk_dlq_messages_total", "mevrisk_consumer_lag_messages", "mevrisk_notifications_total",
    } <= used
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource_uid = _datasource()["uid"]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == datasource_uid for t in panel["targets"])
    variable = dashboard["templating"]["list"][0]
    assert variable["name"] == "portfolio" and variable["datasource"]["uid"] == datasource_uid
    headline = [p for p in panels if "mevrisk_portfolio_var_usd" in json.dumps(p["targets"])]
    assert headline and all('portfolio=~\\"$portfolio\\"' in json.dumps(p["targets"]) for p in headline)


# -- promtool ---------------------------------------------------------------------------------


@needs_promtool
def test_prometheus_config_passes_promtool() -> None:
    result = _promtool("check", "config", PROM_CONFIG)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "WARNING" not in out, out  # e.g. a file_sd target list that does not exist
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in out


@needs_promtool
def test_prometheus_config_as_compose_mounts_it_passes_promtool(tmp_path: Path) -> None:
    """The container sees prometheus.yml, rules/ and deploy/compose/prometheus-targets/ as targets/."""
    root = tmp_path / "etc-prometheus"
    for source, target in _prometheus_mounts().items():
        copy = shutil.copytree if source.is_dir() else shutil.copy
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        copy(source, root / target)
    result = _promtool("check", "config", root / "prometheus.yml")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "WARNING" not in out, out


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_pass_promtool(path: Path) -> None:
    result = _promtool("check", "rules", path)
    count = sum(len(group["rules"]) for group in _yaml(path)["groups"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    result = _promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_rule_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: a lag threshold ten times higher fails them."""
    shutil.copytree(PROM_DIR / "rules", tmp_path / "rules")
    rules = tmp_path / "rules" / "mevrisk.yml"
    text = rules.read_text()
    assert "topic:mevrisk_consumer_lag_messages:sum > 10000" in text
    rules.write_text(text.replace("topic:mevrisk_consumer_lag_messages:sum > 10000",
                                  "topic:mevrisk_consumer_lag_messages:sum > 100000"))
    result = _promtool("test", "rules", *sorted((tmp_path / "rules" / "tests").glob("*.yml")))
    assert result.returncode != 0
    assert "MevRiskConsumerLagHigh" in result.stdout + result.stderr


# -- Docker Compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(_yaml(COMPOSE))


def _services() -> dict[str, Any]:
    return dict(_yaml(COMPOSE)["services"])


def _bind_mounts(service: dict[str, Any]) -> dict[Path, str]:
    """Host path (resolved against the compose file) -> container path, for bind mounts only."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[(COMPOSE_DIR / source).resolve()] = target
    return mounts


def _prometheus_mounts() -> dict[Path, str]:
    """Host path -> path relative to the container's config directory."""
    service = _services()["prometheus"]
    config_file = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file="))
    config_dir = str(Path(config_file).parent)
    return {source: str(Path(target).relative_to(config_dir))
            for source, target in _bind_mounts(service).items()}


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"//{url}")
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def _listen_port(service: dict[str, Any]) -> int:
    flag = next(a for a in service["command"] if a.startswith("--web.listen-address="))
    return int(flag.rsplit(":", 1)[1])


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[1]) for p in service.get("ports", [])}


def _targets(path: Path) -> list[str]:
    return [t for group in _yaml(path) for t in group["targets"]]


def test_compose_runs_every_part(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "worker", "simulator", "prometheus",
                                        "alertmanager", "grafana"}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_compose_mounts_and_builds_from_paths_that_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert context == REPO_ROOT, name
            dockerfile = context / build["dockerfile"]
            assert dockerfile.exists(), name
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in shlex.split(line)[1:-1]:
                        assert (context / source).exists(), f"{dockerfile.name}: COPY {source}"


def test_compose_ports_and_addresses_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    worker = services["worker"]
    web_port = int(worker["environment"]["MEVRISK_WEB_PORT"])
    assert web_port in _published(worker)

    targets = COMPOSE_DIR / "prometheus-targets"
    assert [_host_port(t) for t in _targets(targets / "mevrisk-workers.yml")] == [("worker", web_port)]
    assert worker["environment"]["MEVRISK_WEB_HOST"] == "worker"  # the name Prometheus scrapes
    alertmanager_port = _listen_port(services["alertmanager"])
    assert [_host_port(t) for t in _targets(targets / "alertmanagers.yml")] == [("alertmanager",
                                                                                 alertmanager_port)]
    channel = load_config(COMPOSE_DIR / "channels.yaml").channels["alertmanager"]
    assert channel.enabled and _host_port(channel.base_url) == ("alertmanager", alertmanager_port)
    assert alertmanager_port in _published(services["alertmanager"])

    prometheus_port = _listen_port(services["prometheus"])
    assert prometheus_port in _published(services["prometheus"])
    grafana_env = services["grafana"]["environment"]
    assert _host_port(grafana_env["MEVRISK_PROMETHEUS_URL"]) == ("prometheus", prometheus_port)

    kafka = services["kafka"]["environment"]
    listeners = dict(a.split("://", 1) for a in kafka["KAFKA_LISTENERS"].split(","))
    advertised = dict(a.split("://", 1) for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert {name: _host_port(a)[1] for name, a in advertised.items()} == {
        name: int(a.rsplit(":", 1)[1]) for name, a in listeners.items() if name in advertised}
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    controller_port = listeners[controller].rsplit(":", 1)[1]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:{controller_port}"
    assert f"kafka-data:{kafka['KAFKA_LOG_DIRS']}" in services["kafka"]["volumes"]
    advertised_addresses = {_host_port(a) for a in advertised.values()}
    for name in ("topics", "worker", "simulator"):
        bootstrap = _host_port(services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"])
        assert bootstrap in advertised_addresses, name


def test_compose_mounts_what_the_configs_refer_to(compose: dict[str, Any]) -> None:
    # Prometheus: its file_sd lists are found in the mounted targets directory
    mounted = {target: source for source, target in _prometheus_mounts().items()}
    config = _yaml(PROM_CONFIG)
    sd_files = [f for job in config["scrape_configs"] + config["alerting"]["alertmanagers"]
                for sd in job.get("file_sd_configs", []) for f in sd["files"]]
    assert sd_files
    for file in sd_files:
        directory, name = str(Path(file).parent), Path(file).name
        assert directory in mounted and (mounted[directory] / name).exists(), file
    assert mounted["prometheus.yml"] == PROM_CONFIG
    assert all(str(Path(f).parent) in mounted for f in config["rule_files"])
    # Grafana: the dashboard provider reads where the dashboards are mounted
    grafana = _bind_mounts(compose["services"]["grafana"])
    provider = _yaml(GRAFANA / "provisioning" / "dashboards" / "mevrisk.yml")["providers"][0]
    assert grafana[(GRAFANA / "dashboards").resolve()] == provider["options"]["path"]
    assert grafana[(GRAFANA / "provisioning").resolve()] == "/etc/grafana/provisioning"
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(provider["options"]["path"])
    assert (GRAFANA / "dashboards" / Path(home).name).exists()
    assert _datasource()["url"] == "${MEVRISK_PROMETHEUS_URL}"
    # the worker reads the channels file the compose file mounts
    worker = compose["services"]["worker"]
    assert _bind_mounts(worker)[(COMPOSE_DIR / "channels.yaml").resolve()] == \
        worker["environment"]["MEVRISK_CHANNELS_FILE"]


def test_compose_commands_are_valid_mevrisk_commands(compose: dict[str, Any]) -> None:
    from streams.cli import OWN_COMMANDS, _parser

    for name in ("topics", "simulator"):
        command = compose["services"][name]["command"]
        assert command[0] in OWN_COMMANDS
        _parser().parse_args(command)  # exits (SystemExit) on an unknown flag
    assert compose["services"]["worker"]["command"][0] == "worker"

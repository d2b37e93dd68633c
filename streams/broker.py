"""Local single-node Apache Kafka (KRaft) for development, demos and tests.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml`` and are
cached under ``.cache/kafka/libs``; its data and log live under ``.cache/kafka/``.
Everything here is idempotent: ``start`` on a running broker, ``stop`` on a stopped
one and ``fetch`` with jars present all return at once. ``LocalBroker(secured=True)`` runs the same
broker with SASL/SCRAM listeners and ACLs (``streams.secured_broker``), its data under
``.cache/kafka/secured-<port>/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import MevRiskError

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"


class BrokerError(MevRiskError):
    """The local broker could not be fetched, started or stopped."""


@dataclass(frozen=True)
class LocalBroker:
    """Where the local broker lives and which loopback ports it uses."""

    home: Path = REPO_ROOT / ".cache" / "kafka"
    port: int = 9092
    controller_port: int = 9093
    secured: bool = False
    """SASL/SCRAM listeners and the standard authorizer with ACLs (``streams.secured_broker``)."""

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def secured_dir(self) -> Path:
        """The secured broker's data, credentials and client settings (files of mode 0600)."""
        return self.home / f"secured-{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.secured_dir / "data" if self.secured else self.home / f"data-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / f"broker-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"broker-{self.port}.log"

    @property
    def config_file(self) -> Path:
        return self.home / f"server-{self.port}.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _require(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(
            f"'{tool}' was not found on PATH; it is needed to {purpose}. "
            f"Install it (Debian package: {'maven' if tool == 'mvn' else 'openjdk-17-jre-headless'})."
        )
    return path


def fetch(broker: LocalBroker) -> Path:
    """Download the Kafka jars with Maven unless they are already cached."""
    if broker.libs.is_dir() and any(broker.libs.glob("kafka_2.13-*.jar")):
        return broker.libs
    mvn = _require("mvn", "fetch Apache Kafka from Maven Central")
    broker.home.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(KAFKA_DEPLOY_DIR / "pom.xml"),
        "dependency:copy-dependencies", f"-DoutputDirectory={broker.libs}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"maven could not fetch Kafka:\n{result.stdout}\n{result.stderr}")
    return broker.libs


def _java_cmd(broker: LocalBroker, *args: str) -> list[str]:
    java = _require("java", "run the Kafka broker")
    log4j = KAFKA_DEPLOY_DIR / "log4j.properties"
    return [
        java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp", f"{broker.libs}/*", *args,
    ]


def _write_config(broker: LocalBroker) -> None:
    template = (KAFKA_DEPLOY_DIR / "server.properties").read_text()
    text = (
        template.replace("${PORT}", str(broker.port))
        .replace("${CONTROLLER_PORT}", str(broker.controller_port))
        .replace("${DATA_DIR}", str(broker.data_dir))
    )
    if broker.secured:
        from streams.secured_broker import overlay

        text += "\n" + overlay(broker)
    broker.config_file.touch(mode=0o600)  # the secured broker's file holds its passwords
    broker.config_file.chmod(0o600)
    broker.config_file.write_text(text)


def _format_storage(broker: LocalBroker) -> None:
    if (broker.data_dir / "meta.properties").exists():
        return
    cluster_id = uuid.uuid4().hex[:22]
    cmd = _java_cmd(
        broker, "kafka.tools.StorageTool", "format", "-t", cluster_id,
        "-c", str(broker.config_file), *_secured_format_args(broker),
    )
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")


def _secured_format_args(broker: LocalBroker) -> list[str]:
    if not broker.secured:
        return []
    from streams.secured_broker import format_args

    return format_args(broker)


def client_kwargs(broker: LocalBroker) -> dict[str, Any]:
    """aiokafka settings that reach ``broker``: none, or the admin's SASL credentials if secured."""
    if not broker.secured:
        return {}
    from streams.secured_broker import role_client_kwargs

    return role_client_kwargs(broker, "admin")


def _read_pid(broker: LocalBroker) -> int | None:
    try:
        pid = int(broker.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def accepts_metadata(bootstrap: str, timeout_s: float = 3.0, **client: Any) -> bool:
    """True when a Kafka client (with ``client`` settings, e.g. SASL) can fetch cluster metadata."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), **client
        )
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            await asyncio.wait_for(admin.describe_cluster(), timeout_s)
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    host, _, port = bootstrap.partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError:
        return False
    return asyncio.run(probe())


def status(broker: LocalBroker) -> str:
    pid = _read_pid(broker)
    if pid is None:
        return "stopped"
    return "running" if accepts_metadata(broker.bootstrap, **client_kwargs(broker)) else "starting"


def start(broker: LocalBroker, wait_s: float = 90.0) -> int:
    """Start the broker if it is not running; return its pid once it serves metadata."""
    pid = _read_pid(broker)
    if pid is not None:
        _check_mode(broker)
    if pid is not None and accepts_metadata(broker.bootstrap, **client_kwargs(broker)):
        return pid
    if pid is None:
        fetch(broker)
        broker.home.mkdir(parents=True, exist_ok=True)
        _write_config(broker)
        _format_storage(broker)
        with broker.log_file.open("ab") as log:
            proc = subprocess.Popen(
                _java_cmd(broker, "kafka.Kafka", str(broker.config_file)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        broker.pid_file.write_text(str(proc.pid))
        pid = proc.pid
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _read_pid(broker) is None:
            tail = broker.log_file.read_text(errors="replace")[-3000:]
            raise BrokerError(f"the Kafka broker exited during start-up; log tail:\n{tail}")
        if accepts_metadata(broker.bootstrap, **client_kwargs(broker)):
            return pid
        time.sleep(0.5)
    raise BrokerError(
        f"the Kafka broker did not serve metadata within {wait_s:.0f}s; see {broker.log_file}"
    )


def last_started_secured(broker: LocalBroker) -> bool | None:
    """Whether the broker last configured on this port is the secured one (None: never started)."""
    try:
        return "sasl.enabled.mechanisms" in broker.config_file.read_text()
    except FileNotFoundError:
        return None


def _check_mode(broker: LocalBroker) -> None:
    """Refuse to wait for a running broker of the other mode (secured or not) on the same port."""
    running_secured = last_started_secured(broker)
    if running_secured is not None and running_secured != broker.secured:
        mode = "a secured" if running_secured else "an unsecured"
        raise BrokerError(f"{mode} broker already runs on port {broker.port}; stop it first "
                          f"('mevrisk broker stop --port {broker.port}')")


def stop(broker: LocalBroker, wait_s: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL); True if one was running."""
    pid = _read_pid(broker)
    if pid is None:
        broker.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _read_pid(broker) is not None:
        time.sleep(0.2)
    if _read_pid(broker) is not None:
        os.kill(pid, signal.SIGKILL)
    broker.pid_file.unlink(missing_ok=True)
    return True


def main_broker(action: str, broker: LocalBroker) -> int:
    """CLI body for ``mevrisk broker start|stop|status|fetch``."""
    try:
        if action == "fetch":
            print(fetch(broker))
        elif action == "start":
            pid = start(broker)
            print(f"kafka running pid={pid} bootstrap={broker.bootstrap}")
        elif action == "stop":
            print("kafka stopped" if stop(broker) else "kafka was not running")
        else:
            print(f"kafka {status(broker)} bootstrap={broker.bootstrap}")
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

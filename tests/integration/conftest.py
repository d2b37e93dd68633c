"""Integration fixtures: fresh prefixed topics per test and real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import REPO_ROOT

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    """A test's isolated slice of the broker: its topic prefix, app id and environment."""

    bootstrap: str
    prefix: str
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def environ(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            MEVRISK_TOPIC_PREFIX=self.prefix,
            MEVRISK_APP_ID=f"{self.prefix}app",
            MEVRISK_DATA_DIR=str(self.tmp / "worker"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra)
        env.update(overrides)
        return env

    def mevrisk(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args], cwd=REPO_ROOT, env=self.environ(**env),
            capture_output=True, text=True, timeout=timeout, check=True,
        )


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    web_port: int
    log: Path

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly these labels (0.0 when absent)."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def state(self) -> str:
        """The worker's non-zero mevrisk_ samples and its log tail, for failure messages."""
        try:
            lines = [x for x in self.metrics_text().splitlines()
                     if x.startswith("mevrisk_") and "_bucket" not in x and "_created" not in x]
        except OSError as exc:
            lines = [f"/metrics unreachable: {exc}"]
        return "\n".join(lines) + "\n--- log tail ---\n" + self.log.read_text(errors="replace")[-2000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing waited for may not exist yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Env:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    environment = Env(bootstrap=kafka_bootstrap, prefix=prefix, tmp=tmp_path)
    environment.mevrisk("topics", "create")
    return environment


@pytest.fixture
def start_worker(env: Env) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(**overrides: str) -> Worker:
        port = free_port()
        log = env.tmp / f"worker-{len(workers)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(port)],
            cwd=REPO_ROOT, env=env.environ(MEVRISK_WEB_PORT=str(port), **overrides),
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        worker = Worker(proc=proc, web_port=port, log=log)
        workers.append(worker)
        wait_until(lambda: proc.poll() is None and worker.metrics_text(), 90, "the worker's /metrics")
        return worker

    yield start
    for worker in workers:
        worker.stop()


async def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_097_152, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Read ``count`` JSON values from the start of ``topic`` (or fewer at timeout)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None, max_partition_fetch_bytes=4_194_304,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend({"key": r.key, **orjson.loads(r.value)} for r in records)
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on a free loopback port, serving ``handler`` in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)

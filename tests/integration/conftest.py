"""Integration fixtures: fresh prefixed topics per test and real worker processes watched for crashes.

Every worker a test starts (``start_worker``) is watched while and after the test (``worker_watch``):
the test fails if a worker's log shows a crash (Faust logs ``Crashed reason=...`` for a dead agent,
task or App; any Python traceback counts too), if a worker exits before the test stops it (or stops
with a non-zero code after SIGTERM), or if its ``GET /api/v1/health`` answers 503 or names a dead
component. ``wait_until`` fails fast with the crash instead of waiting out its timeout. A test that
kill -9s a worker on purpose declares it with ``@pytest.mark.kills_worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import REPO_ROOT
from tests.conftest import POST_CALL_CHECKS

pytestmark = pytest.mark.integration


TEST_CHECKPOINT_SECRET = "integration-test-checkpoint-secret"
"""Signs the test workers' checkpoints (MEVRISK_CHECKPOINT_SECRET; production sets its own)."""


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
            MEVRISK_CHECKPOINT_SECRET=TEST_CHECKPOINT_SECRET,
            # The equality tests replay recordings faster than real time (a 50 ms lateness is then a
            # few ms of wall time) and compare with the offline run: they keep the watermark of
            # before the latency defaults (2 s lateness, no release of partitions read to their
            # end). tests/integration/test_latency_defaults.py runs the new defaults, in real time.
            MEVRISK_ALLOWED_LATENESS_MS="2000",
            MEVRISK_HEAD_IDLE_MS="0",
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


CRASH_LINE = re.compile(r"\b[Cc]rashed\b|Traceback \(most recent call last\)")
"""A log line that shows a crash: Faust/mode log ``Crashed reason=...`` for a dead agent, task or
service (and ``... crashed: ...`` for a thread); a traceback is a crash until a test allows it."""
_VIEWER_ROLES = {"viewer", "operator", "admin"}


class WorkerCrashed(AssertionError):
    """A watched worker crashed, died or reported a dead component."""


def _health_token(environ: dict[str, str]) -> str | None:
    """A token the worker accepts for ``/api/v1/health`` (None: reads are open, or unknown)."""
    try:
        tokens = orjson.loads(environ.get("MEVRISK_API_TOKENS") or "{}")
    except orjson.JSONDecodeError:
        return None
    for token, role in tokens.items() if isinstance(tokens, dict) else ():
        if (role.get("role") if isinstance(role, dict) else role) in _VIEWER_ROLES:
            return str(token)
    return None


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    web_port: int
    log: Path
    token: str | None = None
    may_kill: bool = False
    """The test declared ``@pytest.mark.kills_worker``: ``stop(SIGKILL)`` is allowed."""
    allow_log: re.Pattern[str] | None = None
    """Crash lines matching this are expected (a test that provokes them on purpose)."""
    stopped_by: int | None = None
    exited_on_its_own: int | None = None
    _log_offset: int = 0
    _crash_lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of ``GET /api/v1/health``; raises OSError when unreachable."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}/api/v1/health", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, orjson.loads(body)
            except orjson.JSONDecodeError:
                return e.code, {"raw": body.decode(errors="replace")[:500]}

    def crash_lines(self) -> list[str]:
        """Crash lines of the log so far (read incrementally), with the line after each for context."""
        with self._lock:
            if not self.log.exists():
                return []
            with self.log.open("rb") as f:
                f.seek(self._log_offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written is read next time
            self._log_offset += len(complete)
            lines = complete.decode(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if CRASH_LINE.search(line) and not (self.allow_log and self.allow_log.search(line)):
                    self._crash_lines.append(" | ".join(x.strip() for x in lines[i:i + 2]))
            return list(self._crash_lines)

    def problems(self, *, ask_health: bool = True) -> list[str]:
        """What is wrong with this worker now: crash lines in its log, an exit the test did not ask
        for (or a non-zero code after SIGTERM), a 503 or a dead component on /api/v1/health."""
        out = [f"log: {line}" for line in self.crash_lines()]
        code = self.proc.poll()
        if self.exited_on_its_own is not None:
            out.append(f"exited with code {self.exited_on_its_own} before the test stopped it")
        elif code is not None and self.stopped_by is None:
            out.append(f"exited with code {code} before the test stopped it")
        elif code is not None and self.stopped_by == signal.SIGTERM and code != 0:
            out.append(f"exited with code {code} after SIGTERM (a graceful stop exits 0)")
        if code is None and ask_health:
            try:
                status, body = self.health()
            except (OSError, ValueError):
                status, body = 0, {}  # busy or not listening yet: the log and the exit code still tell
            components = body.get("components") or {}
            dead = sorted(set(body.get("dead") or ()) | {
                name for name, state in components.items() if state != "running"})
            if status == 503 or body.get("status") == "down" or dead:
                out.append(f"/api/v1/health answered {status}, status {body.get('status')!r}, "
                           f"dead components {dead}")
        return [f"worker :{self.web_port} {p}" for p in out]

    def assert_healthy(self) -> None:
        """Raise :class:`WorkerCrashed` if :meth:`problems` finds anything."""
        found = self.problems()
        if found:
            raise WorkerCrashed("\n".join(found) + "\n--- log tail ---\n" + self.log_tail())

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def state(self) -> str:
        """The worker's non-zero mevrisk_ samples, its problems and its log tail, for failure messages."""
        try:
            lines = [x for x in self.metrics_text().splitlines()
                     if x.startswith("mevrisk_") and "_bucket" not in x and "_created" not in x]
        except OSError as exc:
            lines = [f"/metrics unreachable: {exc}"]
        problems = self.problems(ask_health=False)
        return "\n".join(lines + problems) + "\n--- log tail ---\n" + self.log_tail(2000)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the worker with ``sig`` (SIGKILL only in a test marked ``kills_worker``)."""
        if sig == signal.SIGKILL and not self.may_kill:
            raise AssertionError("a test that kill -9s a worker declares it: @pytest.mark.kills_worker")
        code = self.proc.poll()
        if code is not None:
            if self.stopped_by is None and self.exited_on_its_own is None:
                self.exited_on_its_own = code
            return
        self.stopped_by = sig
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._crash_lines.append(f"did not stop within 30 s of signal {sig}: killed")


class CrashWatch:
    """The workers of one test, checked every 2 s in a thread while the test runs and once
    more when it ends; ``wait_until`` raises the first problem found instead of timing out."""

    interval_s = 2.0

    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.found: list[str] = []
        self.reported: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-watch", daemon=True)
        self._thread.start()

    def add(self, worker: Worker) -> Worker:
        self.workers.append(worker)
        return worker

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for worker in list(self.workers):
                try:
                    found = worker.problems()
                except Exception as exc:  # the watch itself must not die silently
                    found = [f"crash watch error: {exc!r}"]
                if found and not self.found:
                    self.found = found

    def raise_if_found(self) -> None:
        if self.found:
            raise WorkerCrashed("\n".join(self.found))

    def problems(self) -> list[str]:
        return [p for w in self.workers for p in w.problems()]

    def check(self) -> None:
        """Raise :class:`WorkerCrashed` naming every problem of every worker (with log tails)."""
        found = self.problems()
        self.reported.update(found)
        if found:
            tails = "".join(f"\n--- log tail of :{w.web_port} ---\n{w.log_tail()}" for w in self.workers
                            if any(p.startswith(f"worker :{w.web_port} ") for p in found))
            raise WorkerCrashed("\n".join(found) + tails)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_ACTIVE_WATCH: CrashWatch | None = None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if _ACTIVE_WATCH is not None:
            _ACTIVE_WATCH.raise_if_found()
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
def worker_watch(request: pytest.FixtureRequest) -> Iterator[CrashWatch]:
    """Watches the workers of this test (see the module docstring); the check after the test body
    runs in ``tests/conftest.py``'s ``pytest_runtest_call``, the exit codes are checked here after
    every worker is stopped."""
    global _ACTIVE_WATCH
    watch = CrashWatch()
    _ACTIVE_WATCH = watch
    request.node.stash.setdefault(POST_CALL_CHECKS, []).append(watch.check)
    try:
        yield watch
    finally:
        _ACTIVE_WATCH = None
        watch.close()
        for worker in watch.workers:
            worker.stop()
    found = [p for w in watch.workers for p in w.problems(ask_health=False) if p not in watch.reported]
    if found:
        raise WorkerCrashed("\n".join(found))


@pytest.fixture
def start_worker(env: Env, worker_watch: CrashWatch, request: pytest.FixtureRequest
                 ) -> Callable[..., Worker]:
    """Start a worker process (``overrides`` go to its environment), watched by ``worker_watch``."""
    may_kill = request.node.get_closest_marker("kills_worker") is not None

    def start(*, allow_log: str | None = None, **overrides: str) -> Worker:
        port = free_port()
        log = env.tmp / f"worker-{len(worker_watch.workers)}.log"
        environ = env.environ(MEVRISK_WEB_PORT=str(port), **overrides)
        level = os.environ.get("MEVRISK_TEST_WORKER_LOG", "warn")  # e.g. info, to debug a failure
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", level, "--web-port", str(port)],
            cwd=REPO_ROOT, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = worker_watch.add(Worker(proc=proc, web_port=port, log=log, token=_health_token(environ),
                                         may_kill=may_kill,
                                         allow_log=re.compile(allow_log) if allow_log else None))

        def up() -> str:
            if proc.poll() is not None:
                raise WorkerCrashed(f"the worker exited with code {proc.returncode} while starting\n"
                                    f"{worker.log_tail()}")
            return worker.metrics_text()

        deadline = time.monotonic() + 90
        while True:
            try:
                if up():
                    return worker
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker's /metrics did not answer within 90 s\n{worker.log_tail()}")
            time.sleep(0.25)

    return start


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


INPUT_TOPICS = ("mev.market.ticks", "mev.positions", "mev.strategy.stats")


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()  # no public listing call
        tps = [TopicPartition(t, p) for t in topics for p in sorted(metadata.partitions_for_topic(t) or ())]
        assert len({tp.topic for tp in tps}) == len(topics), f"missing topics among {topics}"
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def read_to_end(bootstrap: str, topic: str, ends: dict[TopicPartition, int] | None = None,
                      timeout: float = 60) -> list[dict[str, Any]]:
    """Every JSON value of ``topic`` (with its key) from the start up to ``ends`` (by default the
    end offsets when called): never fewer. Raises if the end is not reached within ``timeout``."""
    ends = ends if ends is not None else await end_offsets(bootstrap, [topic])
    ends = {tp: end for tp, end in ends.items() if tp.topic == topic}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=4_194_304)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + timeout
        while pending := [tp for tp in ends if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read {len(out)} records but not up to {ends} in {timeout} s")
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out.extend({"key": r.key, **orjson.loads(r.value)} for r in records
                           if r.offset < ends[tp] and r.value is not None)
    finally:
        await consumer.stop()
    return out


def wait_idle(env: Env, outputs: list[str], timeout: float = 120, settle_s: float = 2.0
              ) -> dict[TopicPartition, int]:
    """Wait until the app's consumer group has committed every record of the partitioned inputs
    (of market ticks too where the group commits them) and the end offsets of ``outputs``
    (contract names) stayed put for ``settle_s``; return those end offsets: everything the
    workers will publish for the input so far is below them."""
    from streams.recovery import committed_offsets

    inputs = [env.topic(t) for t in INPUT_TOPICS]
    topics = [env.topic(t) for t in outputs]

    def committed_all() -> bool:
        committed = run(committed_offsets(env.bootstrap, f"{env.prefix}app"))
        ends = run(end_offsets(env.bootstrap, inputs))
        grouped = {tp.topic for tp in committed}
        return all(committed.get(tp, 0) >= end for tp, end in ends.items()
                   if tp.topic != env.topic("mev.market.ticks") or tp.topic in grouped)

    try:
        wait_until(committed_all, timeout, "the workers to commit every input record")
    except AssertionError as exc:
        committed = run(committed_offsets(env.bootstrap, f"{env.prefix}app"))
        ends = run(end_offsets(env.bootstrap, inputs))
        behind = {f"{tp.topic}[{tp.partition}]": (committed.get(tp), end) for tp, end in sorted(ends.items())
                  if committed.get(tp, 0) < end}
        raise AssertionError(f"{exc}; (committed, end) where behind: {behind}") from None
    last = run(end_offsets(env.bootstrap, topics))

    def settled() -> dict[TopicPartition, int] | None:
        nonlocal last
        time.sleep(settle_s)
        now = run(end_offsets(env.bootstrap, topics))
        same, last = now == last, now
        return now if same else None

    ends: dict[TopicPartition, int] = wait_until(settled, timeout, f"the end offsets of {outputs} to settle")
    return ends


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

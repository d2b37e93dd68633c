"""Soak (issue 11): a worker through the real broker, fed the simulator's events with 1 % hostile
messages for N minutes of event time; does its memory stay flat, does it keep running?

The valid stream starts N minutes (plus a margin) in the past, so its event times stay behind the
wall clock (the contract dead-letters event times more than 5 minutes ahead of the broker's
clock) and it is published at the target rate, or slower when the worker falls behind (the
backlog of sent but unprocessed events is bounded): the achieved rate is what the worker sustains.
Hostile messages are the seeded feed of ``tests/robustness/hostile.py`` (all kinds, at most
64 KiB each) aimed at the stream's event time, plus the crafted cases of issue 11 once (deep
nesting, 1.5 MiB tick, 3,000 new portfolios...). The worker runs under a supervisor loop: if it
exits, it is restarted and counted.

Prints key=value lines: rss_mib_start (after warm-up: when 10 % of the events are sent),
rss_mib_end, rss_mib_max, rss_growth_pct, rss_mib_series (every 5 s, thinned), dlq_messages
(records on risk.dlq), processing_errors (``mevrisk_processing_errors_total``), worker_restarts,
events_per_sec_target,
events_per_sec_achieved (inputs the worker processed per wall second while fed), event_minutes.

Run: .venv/bin/python benchmarks/bench_soak.py [--minutes 30] [--rate 5000] [--hostile-pct 1]
(``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker of its own on port 49092).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from streams.sim.generator import Simulator  # noqa: E402
from streams.sim.incidents import incident_schedule_every  # noqa: E402
from streams.sim.publisher import encode  # noqa: E402
from tests.robustness.hostile import Hostile, HostileFeed, World, crafted  # noqa: E402

SOAK_BROKER_PORT = 49092
CHUNK = 500
RSS_EVERY_S = 5.0
IN_TOTAL, DLQ_TOTAL, ERRORS_TOTAL = ("mevrisk_events_in_total", "mevrisk_dlq_messages_total",
                                     "mevrisk_processing_errors_total")


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB, from /proc (no psutil)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SupervisedWorker:
    """``mevrisk worker`` restarted whenever it exits (as its supervisor would), restarts counted;
    its counters are summed over incarnations."""

    environ: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    restarts: int = 0
    carried: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    exits: list[int] = field(default_factory=list)
    stall_s: float = 120.0
    """With a backlog, this long without progress means hung: killed and restarted (a liveness probe)."""
    hung_kills: int = 0
    _progress: tuple[float, float] = (-1.0, 0.0)

    def start(self) -> None:
        self.port = free_port()
        log = (self.workdir / f"worker-{self.restarts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(self.port)],
            cwd=REPO, env={**self.environ, "MEVRISK_WEB_PORT": str(self.port)}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self.metrics_text():
                    return
            time.sleep(0.5)
        if self.proc.poll() is None:
            raise RuntimeError(f"the worker's /metrics did not answer within 120 s (see {log.name})")

    def check(self) -> None:
        """Restart the worker if it exited."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return
        self.exits.append(code)
        for name, value in self.last.items():
            self.carried[name] = self.carried.get(name, 0.0) + value
        self.last = {}
        self.restarts += 1
        print(f"# worker exited with code {code}; restart {self.restarts}", file=sys.stderr)
        self.start()

    def processed(self, backlog: bool) -> float:
        """Input events the worker has processed; kills a worker that makes no progress on a backlog."""
        value = self.counters(IN_TOTAL)[IN_TOTAL]
        now = time.monotonic()
        if value != self._progress[0] or not backlog:
            self._progress = (value, now)
        elif now - self._progress[1] > self.stall_s and self.proc is not None and self.proc.poll() is None:
            print(f"# no progress for {self.stall_s:.0f} s with a backlog: worker killed", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()
            self.hung_kills += 1
            self.check()
            self._progress = (value, time.monotonic())
        return value

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def counters(self, *names: str) -> dict[str, float]:
        """Sums of the samples ``names`` (over all label sets), over every incarnation."""
        with contextlib.suppress(OSError):
            sums = dict.fromkeys(names, 0.0)
            for family in text_string_to_metric_families(self.metrics_text()):
                for sample in family.samples:
                    if sample.name in sums:
                        sums[sample.name] += float(sample.value)
            self.last = sums
        return {n: self.carried.get(n, 0.0) + self.last.get(n, 0.0) for n in names}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Rss:
    samples: list[tuple[float, float]] = field(default_factory=list)
    start: float | None = None

    def sample(self, pid: int) -> None:
        value = rss_mib(pid)
        if value is not None:
            self.samples.append((time.monotonic(), value))


def next_hostile(ts_ms: int, feed: HostileFeed, pending: deque[Hostile], without: list[str]) -> Hostile:
    while not pending:
        pending.extend(h for h in feed.batch(World(ts_ms=ts_ms)) if not excluded(h, without))
    return pending.popleft()


def excluded(h: Hostile, without: list[str]) -> bool:
    """Whether ``--without`` leaves ``h`` out (to measure around a known, still open crash)."""
    return any(part in h.label for part in without)


async def send_hostile(producer: AIOKafkaProducer, prefix: str, h: Hostile) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = await producer.send(prefix + h.topic, h.value,
                                                      key=h.key.encode("utf-8", "replace"))
    return fut




async def feed(args: argparse.Namespace, bootstrap: str, prefix: str, worker: SupervisedWorker,
               rss: Rss) -> tuple[int, int, float, int, int]:
    """Publish the run; returns (valid sent, hostile sent, wall seconds fed, first and last event time)."""
    duration_s = args.minutes * 60
    start_ms = int(time.time() * 1000) - int(duration_s * 1000) - 120_000
    sim = Simulator(args.seed, start_ms, args.rate, duration_s,
                    incident_schedule_every(300, ["flash-crash", "gas-spike", "revert-storm"]))
    total = int(args.rate * duration_s)
    hostile_feed = HostileFeed(args.seed, neutral=False, max_bytes=65_536)
    pending: deque[Hostile] = deque()
    every = max(1, round(100 / args.hostile_pct)) if args.hostile_pct > 0 else 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    sent = hostile = 0
    crafted_sent = False
    started = last_rss = last_check = time.monotonic()
    processed = 0.0
    ts_ms = start_ms
    try:
        futures = []
        for n, ev in enumerate(sim, start=1):
            key, value = encode(ev)
            futures.append(await producer.send(prefix + ev.topic, value, key=key))
            sent, ts_ms = sent + 1, ev.ts_ms
            if every and n % every == 0:
                h = next_hostile(ts_ms, hostile_feed, pending, args.without)
                futures.append(await send_hostile(producer, prefix, h))
                hostile += 1
            if not crafted_sent and sent >= total // 10:
                for h in crafted(World(ts_ms=ts_ms), new_portfolios=3_000):
                    if excluded(h, args.without):
                        continue
                    futures.append(await send_hostile(producer, prefix, h))
                    hostile += 1
                crafted_sent = True
                rss.sample(worker.proc.pid)  # type: ignore[union-attr]
                rss.start = rss.samples[-1][1] if rss.samples else None
            if n % CHUNK:
                continue
            await asyncio.gather(*futures, return_exceptions=True)
            futures.clear()
            now = time.monotonic()
            if now - last_rss >= RSS_EVERY_S:
                rss.sample(worker.proc.pid)  # type: ignore[union-attr]
                last_rss = now
            if now - last_check >= 1.0:  # restarts and backlog
                worker.check()
                processed = worker.processed(backlog=False)
                last_check = now
                while sent - processed > args.max_backlog:
                    if worker.restarts > args.max_restarts:
                        print(f"# gave up after {worker.restarts} restarts", file=sys.stderr)
                        return sent, hostile, time.monotonic() - started, start_ms, ts_ms
                    await asyncio.sleep(0.5)
                    worker.check()
                    processed = worker.processed(backlog=True)
            ahead = sent / args.rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*futures, return_exceptions=True)
        await producer.flush()
    finally:
        await producer.stop()
    fed_s = time.monotonic() - started
    return sent, hostile, fed_s, start_ms, ts_ms


async def topic_records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # no public call lists a topic's partitions
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


def own_broker() -> tuple[str, object | None]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given, None
    from streams.broker import LocalBroker, start, stop

    broker = LocalBroker(port=SOAK_BROKER_PORT, controller_port=SOAK_BROKER_PORT + 1)
    stop(broker)
    shutil.rmtree(broker.data_dir, ignore_errors=True)
    start(broker)
    return broker.bootstrap, broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of event time (default 30)")
    parser.add_argument("--rate", type=float, default=5_000.0, help="target events per second")
    parser.add_argument("--hostile-pct", type=float, default=1.0, help="hostile share of messages, %%")
    parser.add_argument("--bar-ms", type=int, default=None, help="MEVRISK_BAR_MS (default: risk.yaml's)")
    parser.add_argument("--max-backlog", type=int, default=25_000,
                        help="most events sent but not yet processed by the worker")
    parser.add_argument("--max-restarts", type=int, default=5, help="stop feeding after this many")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--without", action="append", default=[], metavar="LABEL",
                        help="leave out hostile messages whose label contains LABEL (a known open crash)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on SIGTERM

    bootstrap, broker = own_broker()
    workdir = Path(tempfile.mkdtemp(prefix="mevrisk-soak-"))
    prefix = f"soak{uuid.uuid4().hex[:8]}."
    environ = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MEVRISK_TOPIC_PREFIX": prefix,
               "MEVRISK_APP_ID": f"{prefix}app", "MEVRISK_DATA_DIR": str(workdir / "data"),
               "PYTHONUNBUFFERED": "1"}
    if args.bar_ms:
        environ["MEVRISK_BAR_MS"] = str(args.bar_ms)
    subprocess.run([sys.executable, "-m", "streams.cli", "topics", "create"], cwd=REPO, env=environ,
                   check=True, capture_output=True)
    worker = SupervisedWorker(environ, workdir)
    rss = Rss()
    try:
        worker.start()
        rss.sample(worker.proc.pid)  # type: ignore[union-attr]
        before = worker.counters(IN_TOTAL)[IN_TOTAL]
        sent, hostile, fed_s, first_ts, last_ts = asyncio.run(feed(args, bootstrap, prefix, worker, rss))
        processed = worker.counters(IN_TOTAL)[IN_TOTAL] - before
        deadline = time.monotonic() + 120  # let the worker finish the backlog
        while time.monotonic() < deadline and worker.processed(backlog=True) < sent * 0.99:
            worker.check()
            time.sleep(1)
        rss.sample(worker.proc.pid)  # type: ignore[union-attr]
        counters = worker.counters(IN_TOTAL, DLQ_TOTAL, ERRORS_TOTAL)
        dlq_records = asyncio.run(topic_records(bootstrap, prefix + "risk.dlq"))
    finally:
        worker.stop()
        if broker is not None:
            from streams.broker import stop

            stop(broker)  # type: ignore[arg-type]
    values = [v for _, v in rss.samples]
    start_mib = rss.start if rss.start is not None else values[0]
    end_mib = values[-1]
    print(f"event_minutes={(last_ts - first_ts) / 60_000:.1f}")
    print(f"events_sent={sent}")
    print(f"hostile_sent={hostile}")
    print(f"events_per_sec_target={args.rate:.0f}")
    print(f"events_per_sec_achieved={processed / fed_s:.0f}")
    print(f"events_processed={counters[IN_TOTAL]:.0f}")
    print(f"wall_seconds_fed={fed_s:.0f}")
    print(f"rss_mib_first={values[0]:.1f}")
    print(f"rss_mib_start={start_mib:.1f}")
    print(f"rss_mib_end={end_mib:.1f}")
    print(f"rss_mib_max={max(values):.1f}")
    print(f"rss_growth_pct={100 * (end_mib / start_mib - 1):.1f}")
    step = max(1, len(values) // 8)
    print(f"rss_mib_series={','.join(f'{v:.0f}' for v in values[::step] + values[-1:])}")
    print(f"dlq_messages={dlq_records}")
    print(f"dlq_messages_metric={counters[DLQ_TOTAL]:.0f}")
    print(f"processing_errors={counters[ERRORS_TOTAL]:.0f}")
    print(f"worker_restarts={worker.restarts}")
    print(f"worker_hung_kills={worker.hung_kills}")
    if worker.exits:
        print(f"worker_exit_codes={','.join(map(str, worker.exits))}")
    if args.without:
        print(f"hostile_left_out={'|'.join(args.without)}")
    print(f"load_average_1m={os.getloadavg()[0]:.2f}")
    print(f"# worker logs: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()

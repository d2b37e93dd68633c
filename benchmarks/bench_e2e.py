"""End to end through the real broker (issue 10, "real-time engine"): throughput of one worker
catching up on full windows, against raw aiokafka and a bare Faust agent on the same topics, and
the live latency of snapshots and alerts behind the event time of their inputs, in one run.

Setup: a local Apache Kafka of its own (``streams.broker``, port ``--broker-port`` 49592, controller
on the next port, data dir ``.cache/kafka/data-49592``, wiped before and after; the broker is
stopped at the end unless it was already running), a fresh topic prefix and app id (consumer
group), 1 s bars (``--bar-ms``), state checkpoints every ``--state-secs`` of event time.

1. History: the simulator's mix (default desk: 5 strategies on portfolios alpha and beta, the
   strategies renamed ``<name>-hist`` so that their position ids never collide with the live
   phase's), ``--history-rate`` events/s of event time for ``--history-secs`` (default 900 s: the
   issue's full windows after >= 15 minutes of event time), ending 60 s before the wall clock, is
   recorded to a JSON-lines file (``run_simulation`` in this process, no broker) and published with
   ``mevrisk replay FILE --pace fast``. ``events`` = the records on the three input topics.
2. ``aiokafka_events_per_sec``: one AIOKafkaConsumer (no group, earliest, ``getmany`` of up to
   10,000, ``max_partition_fetch_bytes`` 4 MiB) reads and orjson-decodes every history record;
   timed from after ``start()`` to the last record (``/work/shared/measure/baseline_aiokafka.py``).
3. ``e2e_events_per_sec``: one worker (``python -m streams.cli worker``) in a fresh group catches up.
   Done = its consumer group has committed every record of the partitioned inputs (admin
   ``OffsetFetch`` of the app id equals the end offset of every partition of positions and strategy
   stats; ticks are read outside the group by the market feed) AND its watermark
   (``/api/v1/health``, not ``recovering``) is at the head (last history event time - 5 s); both
   polled every 0.25 s. Timed FROM ITS FIRST CONSUMED RECORD (the first health poll whose
   ``last_input_event_ts_ms`` is set) to done; ``e2e_events_per_sec_from_start`` times it from
   the process start instead (adds Faust start-up, group join, recovery). ``ratio_vs_aiokafka`` =
   e2e / aiokafka. The worker then stays up, idle, for phase 5.
4. ``faust_bare_events_per_sec``: ``benchmarks/baseline_faust_bare.py`` (a bare Faust agent that
   decodes and counts, fresh group), from its first record to the last history record
   (``/work/shared/measure/baseline_faust.py``).
5. Live latency: the same worker (its windows full of history) while ``mevrisk simulate --pace
   realtime --rate <--rate, 5000> --duration <--live-secs> --incident <--incident>`` publishes (its
   own seed, the default desk; its event time starts at the wall clock, so ``ts_ms`` is the wall
   time the event was made). Every record is read as it is appended to its topic; all topics use
   ``message.timestamp.type=LogAppendTime``, so a record's timestamp is when the broker stored it.
   - ``latency_tick_to_snapshot_ms``: for each ``risk.snapshots`` record, record timestamp minus
     the snapshot's ``ts_ms`` (its as-of event time: the bar end, or the 250 ms coalescing
     boundary after a price or position change, ``agents/pipeline.py``; a snapshot reflects every
     input before that instant, so this is the delay behind the newest input it covers, and a
     lower bound, by at most 250 ms / one bar, for older inputs coalesced into it).
   - ``latency_condition_to_alert_ms``: for each ``risk.alerts`` record with ``transition`` =
     ``firing``, record timestamp minus its ``ts_ms``: the event time at which the rule's condition
     became due (``active_since + for``; the snapshot's event time for rules without ``for``,
     ``agents/alerts/engine.py``).
   Counted: outputs whose event time lies in the live stream, from its first input to its last
   input minus 3 s (one bar plus the allowed lateness: the last bars close only on the idle
   heartbeat after the input stops, not a steady-state delay). After the simulator ends, outputs
   are read until the worker's watermark passes that window (at most ``--drain-s``);
   ``live_drained=false`` says the worker had not caught up by then (the percentiles then miss its
   latest, slowest outputs). ``live_input_append_lag_ms``: the same difference for the simulator's
   own input records (partition 0 of each input topic): the part of the latency spent before
   the worker could read anything.
   - ``broker_roundtrip_ms``: meanwhile, every ``--ping-ms``, a raw produce (acks=all, no linger)
     -> consume (assigned, already fetching) of a 1-partition topic, wall time in this process:
     what any output costs through the broker at this load, so the latencies read as a ratio.

Prints key=value lines: the configuration (history_secs, history_rate, events, portfolios,
strategies, live_rate, live_secs, incident, bar_ms, state_checkpoint_secs, broker_port, loadavg_1m
at start and end: 2 cores are shared), then the figures as each phase ends, then workdir (logs).

Run: .venv/bin/python benchmarks/bench_e2e.py [--history-secs 900] [--history-rate 150] [--rate 5000]
[--live-secs 60] [--incident flash-crash@20s/20s] [--bar-ms 1000] [--state-secs 60] [--drain-s 60]
[--timeout-s 900] [--broker-port 49592]
Every child process runs in its own process group and is stopped (SIGTERM, then SIGKILL) on the way
out, on errors and on SIGTERM/SIGINT too; a phase that exceeds its timeout raises with the reason and
the log to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

REPO = Path(__file__).resolve().parent.parent
BROKER_PORT = 49592
INPUTS = ("mev.market.ticks", "mev.positions", "mev.strategy.stats")
SNAPSHOTS, ALERTS = "risk.snapshots", "risk.alerts"
HISTORY_SEED, LIVE_SEED = 5, 7
HISTORY_END_BEHIND_MS = 60_000
HEAD_SLACK_MS = 5_000
LIVE_TAIL_MS = 3_000
CHECKPOINT_SECRET = "bench-e2e-checkpoint-secret"
SIM_STATS = re.compile(r"sent=(\d+), failed=(\d+).*wall_s=([0-9.]+)")
FAUST_BARE = re.compile(r"faust_bare n=(\d+) secs=([0-9.]+)")


class BenchError(RuntimeError):
    """A phase failed or ran out of time; the message says which, and which log to read."""


def say(line: str) -> None:
    print(line, flush=True)


def note(text: str) -> None:
    print(f"[bench_e2e {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile, as ``/work/shared/measure/live_latency.py``."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------- processes
class Children:
    """Every process this benchmark starts, each the leader of its own process group."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path,
              cwd: Path = REPO) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL to it after ``grace_s``."""
        self._signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        self._signal_group(proc, signal.SIGKILL)  # also any child left in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for _, proc in self.procs:
            self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for _, proc in self.procs:
            self._signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@dataclasses.dataclass
class Run:
    """What every phase shares."""

    args: argparse.Namespace
    bootstrap: str
    work: Path
    children: Children
    prefix: str = dataclasses.field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:8]}.")
    ends: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)
    events: int = 0
    history_last_ms: int = 0

    @property
    def app_id(self) -> str:
        return f"{self.prefix}app"

    def env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, MEVRISK_TOPIC_PREFIX=self.prefix,
                    MEVRISK_APP_ID=self.app_id, MEVRISK_BAR_MS=str(self.args.bar_ms),
                    MEVRISK_CHECKPOINT_SECRET=CHECKPOINT_SECRET,
                    MEVRISK_STATE_CHECKPOINT_SECS=str(self.args.state_secs), PYTHONUNBUFFERED="1", **extra)

    def cli(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """``mevrisk <args>`` in this run's environment; raises BenchError on failure or timeout."""
        argv = [sys.executable, "-m", "streams.cli", *args]
        try:
            done = subprocess.run(argv, cwd=REPO, env=self.env(), capture_output=True, text=True,
                                  timeout=timeout_s, start_new_session=True, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"mevrisk {' '.join(args)}: no result within {timeout_s:.0f}s") from exc
        if done.returncode != 0:
            raise BenchError(f"mevrisk {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        return done

    def topics(self, names: Iterable[str]) -> list[str]:
        return [self.prefix + n for n in names]


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str], wait_s: float = 30.0,
                        only: set[int] | None = None) -> list[TopicPartition]:
    """Every partition (or those in ``only``) of ``topics``, once the metadata lists them all."""
    deadline = time.monotonic() + wait_s
    while True:
        metadata = await consumer._client.fetch_all_metadata()  # no public listing call (streams/host.py)
        found = {t: sorted(metadata.partitions_for_topic(t) or ()) for t in topics}
        if all(found.values()):
            return [TopicPartition(t, p) for t, ps in found.items() for p in ps if only is None or p in only]
        if time.monotonic() > deadline:
            missing = [t for t, ps in found.items() if not ps]
            raise BenchError(f"no partitions of {missing} after {wait_s:.0f}s")
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------------- 1. history
def history_config() -> Any:
    """The simulator's default desk, its strategies renamed ``<name>-hist`` (fresh position ids)."""
    from streams.sim.config import default_config

    base = default_config()
    return dataclasses.replace(base, strategies=tuple(
        dataclasses.replace(s, name=f"{s.name}-hist") for s in base.strategies))


async def publish_history(run: Run) -> None:
    from streams.sim.publisher import run_simulation

    args = run.args
    start_ms = now_ms() - args.history_secs * 1000 - HISTORY_END_BEHIND_MS
    record = run.work / "history.jsonl"
    note(f"recording {args.history_secs}s of event time at {args.history_rate} events/s")
    await run_simulation(seed=HISTORY_SEED, rate_eps=args.history_rate, duration_s=args.history_secs,
                         bootstrap=None, start_ms=start_ms, record_path=record, controls_topic=None,
                         config=history_config())
    run.history_last_ms = max(orjson.loads(line)["ts_ms"] for line in record.open("rb"))
    run.cli("topics", "create", timeout_s=120)
    note("publishing the recording with mevrisk replay --pace fast")
    done = run.cli("replay", str(record), "--pace", "fast", timeout_s=args.timeout_s)
    found = SIM_STATS.search(done.stderr)
    if found is None or int(found[2]) != 0:
        raise BenchError(f"mevrisk replay: {done.stderr[-1000:]}")
    consumer = AIOKafkaConsumer(bootstrap_servers=run.bootstrap)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, run.topics(INPUTS))
        run.ends = {tp: off for tp, off in (await consumer.end_offsets(tps)).items() if off > 0}
    finally:
        await consumer.stop()
    run.events = sum(run.ends.values())
    if run.events != int(found[1]):
        raise BenchError(f"the input topics hold {run.events} records, replay sent {found[1]}")


# ---------------------------------------------------------------------------------- 2. aiokafka
async def aiokafka_baseline(run: Run) -> float:
    consumer = AIOKafkaConsumer(*run.topics(INPUTS), bootstrap_servers=run.bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4_194_304)
    await consumer.start()
    got = 0
    t0 = time.perf_counter()
    try:
        while got < run.events:
            if time.perf_counter() - t0 > run.args.timeout_s:
                raise BenchError(f"aiokafka baseline: {got} of {run.events} records in {run.args.timeout_s}s")
            for recs in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for r in recs:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(r.value)
                got += len(recs)
    finally:
        await consumer.stop()
    return got / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- 3. e2e
class Worker:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.port = free_port()
        self.log = run.work / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        env = self.run.env(MEVRISK_WEB_PORT=str(self.port), MEVRISK_DATA_DIR=str(self.run.work / "data"))
        self.proc = self.run.children.start(
            "worker",
            [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(self.port)],
            env, self.log)
        self.session = aiohttp.ClientSession()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"the worker exited with {self.proc.returncode}; see {self.log}")

    async def health(self) -> dict[str, Any]:
        """``/api/v1/health`` ({} while unreachable or busy; a 503 body is still read)."""
        assert self.session is not None
        try:
            async with self.session.get(f"http://127.0.0.1:{self.port}/api/v1/health",
                                        timeout=aiohttp.ClientTimeout(total=5)) as r:
                found = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    async def watermark(self) -> int:
        health = await self.health()
        return 0 if health.get("recovering", True) else int(health.get("watermark_ms") or 0)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


async def committed(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets ({} while the coordinator does not answer yet)."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return {}
    return {tp: m.offset for tp, m in offsets.items() if m.offset is not None and m.offset >= 0}


async def e2e_catch_up(run: Run, worker: Worker) -> dict[str, float]:
    target = run.history_last_ms - HEAD_SLACK_MS
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    started = time.monotonic()
    worker.start()
    first = at_head = all_committed = None
    wm, done_records = 0, 0
    try:
        while at_head is None or all_committed is None:
            if time.monotonic() - started > run.args.timeout_s:
                raise BenchError(
                    f"e2e: not caught up within {run.args.timeout_s}s: watermark {wm} (target {target}), "
                    f"{done_records} of {run.events} input records committed by group {run.app_id}; "
                    f"see {worker.log}")
            worker.check_alive()
            health = await worker.health()
            now = time.monotonic()
            if first is None and int(health.get("last_input_event_ts_ms") or 0) > 0:
                first = now
            wm = 0 if health.get("recovering", True) else int(health.get("watermark_ms") or 0)
            if at_head is None and wm >= target:
                at_head = now
            offsets = await committed(admin, run.app_id)
            # the group consumes the partitioned inputs; ticks are read outside it by every worker's
            # market feed (no group commits): those count as done once the watermark is at the head
            grouped = {tp: end for tp, end in run.ends.items() if "market.ticks" not in tp.topic}
            done_records = sum(min(offsets.get(tp, 0), end) for tp, end in grouped.items())
            if all_committed is None and done_records >= sum(grouped.values()) and at_head is not None:
                all_committed = now
            await asyncio.sleep(0.25)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if first is None:  # the health API never answered before the worker had caught up
        raise BenchError(f"e2e: no health poll saw the first record before the end; see {worker.log}")
    done = max(at_head, all_committed)
    return {"s": done - first, "from_start_s": done - started, "first_record_s": first - started,
            "watermark_s": at_head - first, "committed_s": all_committed - first}


# ---------------------------------------------------------------------------------- 4. bare Faust
async def faust_bare(run: Run) -> float:
    scratch = run.work / "faust-bare"
    scratch.mkdir()
    log = run.work / "faust-bare.log"
    env = dict(os.environ, BASE_PREFIX=run.prefix, BASE_N=str(run.events),
               KAFKA_BOOTSTRAP_SERVERS=run.bootstrap, PYTHONUNBUFFERED="1")
    proc = run.children.start(
        "faust-bare", [sys.executable, str(REPO / "benchmarks" / "baseline_faust_bare.py"), "worker",
                       "-l", "warn", "--web-port", str(free_port())], env, log, cwd=scratch)
    started = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() - started > run.args.timeout_s:
                raise BenchError(f"bare Faust: not done within {run.args.timeout_s}s; see {log}")
            await asyncio.sleep(0.25)
    finally:
        run.children.stop(proc, grace_s=10)
    found = FAUST_BARE.search(log.read_text(errors="replace"))
    if found is None:
        raise BenchError(f"bare Faust exited with {proc.returncode} before {run.events} records; see {log}")
    return int(found[1]) / float(found[2])


# ---------------------------------------------------------------------------------- 5. live
@dataclasses.dataclass
class Live:
    """What the live phase's readers collect."""

    launched_ms: int
    snapshot_lags: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """(event time, record time - event time) of every live snapshot."""
    alert_lags: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    input_lags: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    rtts_ms: list[float] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


async def positioned_consumer(bootstrap: str, topics: list[str], partitions: set[int] | None,
                              **kw: Any) -> AIOKafkaConsumer:
    """A consumer without a group, assigned to ``partitions`` (None: all) of ``topics``, at their end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kw)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topics, only=partitions)
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def read_outputs(consumer: AIOKafkaConsumer, live: Live) -> None:
    while not live.stop.is_set():
        for tp, recs in (await consumer.getmany(timeout_ms=200)).items():
            for r in recs:
                try:
                    value = orjson.loads(r.value)
                    ts = int(value["ts_ms"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
                if ts < live.launched_ms:
                    continue
                if tp.topic.endswith(SNAPSHOTS):
                    live.snapshot_lags.append((ts, r.timestamp - ts))
                elif value.get("transition") == "firing":
                    live.alert_lags.append((ts, r.timestamp - ts, str(value.get("rule"))))


async def read_inputs(consumer: AIOKafkaConsumer, live: Live) -> None:
    while not live.stop.is_set():
        for recs in (await consumer.getmany(timeout_ms=200)).values():
            for r in recs:
                try:
                    ts = int(orjson.loads(r.value)["ts_ms"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
                live.input_lags.append((ts, r.timestamp - ts))


async def ping(run: Run, live: Live) -> None:
    topic = f"{run.prefix}bench.ping"
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    consumer = await positioned_consumer(run.bootstrap, [topic], None)
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[int, float] = {}

    async def pong() -> None:
        while not live.stop.is_set():
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                got = time.perf_counter()
                for r in recs:
                    t = sent.pop(int(r.value), None)
                    if t is not None:
                        live.rtts_ms.append((got - t) * 1000)

    receiver = asyncio.create_task(pong())
    try:
        for i in itertools.count():
            if live.stop.is_set():
                break
            sent[i] = time.perf_counter()
            await producer.send(topic, str(i).encode())
            await asyncio.sleep(run.args.ping_ms / 1000)
        await asyncio.sleep(0.5)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await producer.stop()
        await consumer.stop()


async def live_phase(run: Run, worker: Worker) -> dict[str, Any]:
    args = run.args
    outputs = await positioned_consumer(run.bootstrap, run.topics([SNAPSHOTS, ALERTS]), None)
    inputs = await positioned_consumer(run.bootstrap, run.topics(INPUTS), {0})
    live = Live(launched_ms=now_ms())
    tasks = [asyncio.create_task(read_outputs(outputs, live)), asyncio.create_task(read_inputs(inputs, live)),
             asyncio.create_task(ping(run, live))]
    log = run.work / "simulate-live.log"
    sim = run.children.start("simulate", [
        sys.executable, "-m", "streams.cli", "simulate", "--seed", str(LIVE_SEED), "--rate", str(args.rate),
        "--duration", str(args.live_secs), "--pace", "realtime", "--incident", args.incident],
        run.env(), log)
    note(f"live: simulator at {args.rate} events/s for {args.live_secs}s ({args.incident})")
    result: dict[str, Any] = {}
    try:
        while sim.poll() is None:
            if now_ms() - live.launched_ms > (args.live_secs + 120) * 1000:
                raise BenchError(f"the live simulator is still running {args.live_secs + 120}s after "
                                 f"its start; see {log}")
            worker.check_alive()
            await asyncio.sleep(0.5)
        found = SIM_STATS.search(log.read_text(errors="replace"))
        if sim.returncode != 0 or found is None:
            raise BenchError(f"the live simulator exited with {sim.returncode}; see {log}")
        result["live_sim_events"] = int(found[1])
        wall_s = float(found[3])
        result["live_sim_events_per_sec"] = int(found[1]) / wall_s if wall_s > 0 else float("nan")
        if not live.input_lags:
            raise BenchError("no live input records were read back from the input topics")
        first_in = min(ts for ts, _ in live.input_lags)
        window = (first_in, max(ts for ts, _ in live.input_lags) - LIVE_TAIL_MS)
        result["window"] = window
        drained_by = time.monotonic() + args.drain_s
        result["live_drained"] = False
        while time.monotonic() < drained_by:
            worker.check_alive()
            if await worker.watermark() >= window[1] + args.bar_ms:
                result["live_drained"] = True
                await asyncio.sleep(2.0)  # what it published just before is appended and read
                break
            await asyncio.sleep(0.5)
        result["live_worker_behind_ms"] = max(0, window[1] + args.bar_ms - await worker.watermark())
    finally:
        live.stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await outputs.stop()
        await inputs.stop()
    result["live"] = live
    return result


def live_lines(result: dict[str, Any], incident_at_s: float) -> list[str]:
    live: Live = result["live"]
    lo, hi = result["window"]
    lines = [f"live_sim_events={result['live_sim_events']}",
             f"live_sim_events_per_sec={result['live_sim_events_per_sec']:.0f}",
             f"live_window_s={(hi - lo) / 1000:.1f}"]

    def figures(name: str, xs: list[float]) -> None:
        lines.append(f"{name}_n={len(xs)}")
        for p in (50, 99):
            lines.append(f"{name}_p{p}={pct(xs, p):.0f}" if xs else f"{name}_p{p}=nan")
        if xs:
            lines.append(f"{name}_max={max(xs):.0f}")

    figures("latency_tick_to_snapshot_ms", [lag for ts, lag in live.snapshot_lags if lo <= ts <= hi])
    alerts = [(ts, lag, rule) for ts, lag, rule in live.alert_lags if lo <= ts <= hi]
    figures("latency_condition_to_alert_ms", [lag for _, lag, _ in alerts])
    fired = Counter(rule for _, _, rule in alerts)
    lines.append("alerts_fired=" + (",".join(f"{r}:{n}" for r, n in sorted(fired.items())) or "none"))
    after = sorted(a for a in alerts if a[0] >= lo + incident_at_s * 1000)
    lines.append("incident_first_alert=" + (f"{after[0][2]}:{after[0][1]}ms" if after else "none"))
    figures("live_input_append_lag_ms", [lag for ts, lag in live.input_lags if lo <= ts <= hi])
    lines.append(f"live_drained={str(result['live_drained']).lower()}")
    lines.append(f"live_worker_behind_ms={result['live_worker_behind_ms']}")
    rtts = live.rtts_ms
    lines.append(f"broker_roundtrip_n={len(rtts)}")
    for p in (50, 99):
        lines.append(f"broker_roundtrip_ms_p{p}=" + (f"{pct(rtts, p):.1f}" if rtts else "nan"))
    return lines


# ---------------------------------------------------------------------------------- driver
def incident_at_s(spec: str) -> float:
    """Seconds into the live run at which ``spec`` starts (0 if it cannot be read).

    >>> incident_at_s("flash-crash@20s/20s"), incident_at_s("gas-spike@1m")
    (20.0, 60.0)
    """
    from streams.sim.incidents import Incident

    try:
        return float(Incident.parse(spec).at_s)
    except Exception:
        return 0.0


async def bench(run: Run) -> None:
    args = run.args
    await publish_history(run)
    say(f"events={run.events}")
    note(f"{run.events} history records; aiokafka baseline")
    aiokafka_eps = await aiokafka_baseline(run)
    say(f"aiokafka_events_per_sec={aiokafka_eps:.0f}")
    worker = Worker(run)
    try:
        note("e2e: one worker catches up")
        e2e = await e2e_catch_up(run, worker)
        e2e_eps = run.events / e2e["s"]
        say("e2e_measured_from=first_consumed_record")
        say(f"e2e_events_per_sec={e2e_eps:.0f}")
        say(f"e2e_events_per_sec_from_start={run.events / e2e['from_start_s']:.0f}")
        say(f"e2e_s={e2e['s']:.1f}")
        say(f"e2e_first_record_after_start_s={e2e['first_record_s']:.1f}")
        say(f"e2e_watermark_at_head_s={e2e['watermark_s']:.1f}")
        say(f"e2e_all_committed_s={e2e['committed_s']:.1f}")
        say(f"ratio_vs_aiokafka={e2e_eps / aiokafka_eps:.4f}")
        note("bare Faust baseline (the worker idles meanwhile)")
        faust_eps = await faust_bare(run)
        say(f"faust_bare_events_per_sec={faust_eps:.0f}")
        say(f"ratio_faust_bare_vs_aiokafka={faust_eps / aiokafka_eps:.4f}")
        result = await live_phase(run, worker)
        for line in live_lines(result, incident_at_s(args.incident)):
            say(line)
    finally:
        await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history-secs", type=int, default=900, help="event time of the history")
    # 150 (~122k events): about 6 min in all at today's ~900 events/s end to end on 2 shared cores;
    # the first full run, at 200 (162k events), took 7 min 7 s
    parser.add_argument("--history-rate", type=int, default=150, help="history events/s of event time")
    parser.add_argument("--rate", type=int, default=5000, help="live simulator events/s")
    parser.add_argument("--live-secs", type=int, default=60)
    parser.add_argument("--incident", default="flash-crash@20s/20s", help="as simulate --incident")
    parser.add_argument("--bar-ms", type=int, default=1000)
    parser.add_argument("--state-secs", type=float, default=60.0, help="state checkpoint interval; 0: off")
    parser.add_argument("--drain-s", type=float, default=60.0, help="wait for the worker after the live run")
    parser.add_argument("--ping-ms", type=float, default=100.0, help="broker ping interval")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per catch-up phase")
    parser.add_argument("--broker-port", type=int, default=BROKER_PORT)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from streams.broker import LocalBroker, start, status, stop
    from streams.sim.config import default_config

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through the finally blocks
    strategies = default_config().strategies
    say(f"history_secs={args.history_secs}")
    say(f"history_rate={args.history_rate}")
    say(f"portfolios={len({s.portfolio for s in strategies})}")
    say(f"strategies={len(strategies)}")
    say(f"live_rate={args.rate}")
    say(f"live_secs={args.live_secs}")
    say(f"incident={args.incident}")
    say(f"bar_ms={args.bar_ms}")
    say(f"state_checkpoint_secs={args.state_secs:g}")
    say(f"broker_port={args.broker_port}")
    say(f"loadavg_1m_start={os.getloadavg()[0]:.2f}")
    broker = LocalBroker(port=args.broker_port, controller_port=args.broker_port + 1)
    ours = status(broker) == "stopped"
    if ours:
        shutil.rmtree(broker.data_dir, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))  # kept: the logs
    children = Children()
    try:
        note(f"{'starting' if ours else 'reusing'} the broker on {broker.bootstrap}")
        start(broker)
        asyncio.run(bench(Run(args, broker.bootstrap, work, children)))
    except BenchError as exc:
        say(f"error={exc}")
        raise SystemExit(1) from exc
    finally:
        children.stop_all()
        if ours:
            stop(broker)
            shutil.rmtree(broker.data_dir, ignore_errors=True)
        say(f"loadavg_1m_end={os.getloadavg()[0]:.2f}")
        say(f"workdir={work}")


if __name__ == "__main__":
    main()

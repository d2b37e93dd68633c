"""Restart recovery after kill -9 against the real broker (issue 15): does it grow with history?

One worker (1 s bars) with state checkpoints (``MEVRISK_STATE_CHECKPOINT_SECS``, default 60 s of
event time; ``--state-secs 0`` measures today's full replay instead). History H is published with
the simulator (``--rate`` events/s of event time for ``--secs``), the worker catches up, is killed
with SIGKILL and restarted: ``recovery_s_h1`` is the wall time from the restart until its watermark
is back at the head (within 5 s). Then 3 more chunks are published (4H in all), the worker catches
up live, is killed and restarted again: ``recovery_s_h4``. The method of
``/work/shared/measure/recovery_growth.sh``, with the history's start aligned (``aligned_start``) so
that both heads lie half a checkpoint interval after a checkpoint instant: the ratio then compares
two restarts equally far from their last checkpoint, and measures growth with history alone.

Prints key=value lines: events_h1, events_h4, recovery_s_h1, recovery_s_h4, recovery_growth_ratio
(h4 / h1), recovery_phases_h1/_h4 (seconds after the restart at which the web server first answered,
recovery was over and the head was reached), replayed_h1, replayed_h4 (partitioned input records
the recovery replayed, from its log line), checkpoint_take_ms, checkpoint_bytes (last take, from
/metrics), state_secs.

Takeover (``--takeover``, on by default; ``--no-takeover`` skips it, ``--only takeover`` runs it
alone): a dead peer's partitions move to the survivor. A fresh topic prefix and app id; a history of
``--takeover-secs`` of event time at ``--rate`` is published (fast pace); TWO workers (own web
ports and data dirs, one app id, static members) start together and run until both are recovered
and at the head, the group is stable with the input partitions split between them and their local
portfolios (``/api/v1/health`` ``portfolios.local``) disjoint. Then the simulator runs in the
background at ``--pace realtime`` (``--live-rate`` events/s, event times continuing after the
workers' clocks) and, once both consume it, the worker owning at least one portfolio is killed with
SIGKILL (of two such, the one without input partition 0, i.e. not the market-wide alert leader).
Both workers run as standbys (``MEVRISK_STANDBY_REPLICAS=1``: a warm copy of ``risk.state``).
The survivor's peer watch (``streams.peer_watch``) finds the dead worker's web port refusing
connections and removes it from the group (before its 10 s session would time out); the survivor
rebuilds for the new assignment,
restoring the dead worker's partitions from its last checkpoint when the two share an instant.
``takeover_s`` is the wall time from the kill until the survivor has published, on the run's
``risk.snapshots``, a new snapshot (record timestamp after the kill, event time past the newest
one published before it) for every portfolio the dead worker owned; ``takeover_first_s`` for the
first of them. The partitions come from the group (DescribeGroups: a static member's id begins with
its ``group.instance.id``, ``<host>:<web port>``).

Takeover prints: takeover_events (history), takeover_live_rate, takeover_killed (worker name),
takeover_killed_partitions, takeover_killed_leader (held partition 0), takeover_portfolios (the
dead worker's), takeover_survivor_portfolios (before the kill), takeover_kill_wall (local time, as
in the worker logs), takeover_s, takeover_first_s, then from the survivor's log after the kill:
takeover_evicted_s (kill to its last ``assignment changed``: the rebalance that gave it the dead
worker's partitions), takeover_rebuilt_s (kill to its last ``recovery:`` line), takeover_restored
(that line: true for "restored state", false for a replay), takeover_replayed (partitioned input
records that rebuild replayed), takeover_rebuild_s (its duration, from the same line),
takeover_survivor_partitions (of the last ``assignment changed``), takeover_assignment_changes (one
expected), takeover_republished (post-kill snapshots of those portfolios no newer than the dead
worker's last: a replay that the output heads failed to suppress), takeover_workdir. With the
simulator's default desk (portfolios alpha and beta) one worker may own both and the other none.

Run: .venv/bin/python benchmarks/bench_recovery.py [--rate 1000] [--secs 300] [--state-secs 60]
[--takeover | --no-takeover] [--only recovery|takeover] [--takeover-secs 120] [--live-rate 200]
[--broker-port 59092]
(``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker of its own on port ``--broker-port``,
default 59092, its controller on the next port). Also prints broker_port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BROKER_PORT = 59092
REPLAYED = re.compile(r"recovery: .*?replayed (\d+) partitioned input records")
REBUILT = re.compile(r"recovery: (?:restored state|replayed \d+ partitioned input records in).*")
REBUILD_S = re.compile(r" in ([0-9.]+)s \(")
ASSIGNMENT = re.compile(r"assignment changed from \[[0-9, ]*\] to \[([0-9, ]*)\]")
LOG_STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
HEAD_SLACK_MS = 5_000
CHECKPOINT_SECRET = "bench-recovery-checkpoint-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, bootstrap: str, state_secs: float, work: Path) -> None:
        self.work = work
        self.port = free_port()
        prefix = f"br{uuid.uuid4().hex[:8]}."
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, MEVRISK_TOPIC_PREFIX=prefix,
                        MEVRISK_APP_ID=f"{prefix}app", MEVRISK_BAR_MS="1000",
                        MEVRISK_DATA_DIR=str(work / "data"), MEVRISK_WEB_PORT=str(self.port),
                        MEVRISK_CHECKPOINT_SECRET=CHECKPOINT_SECRET,
                        MEVRISK_STATE_CHECKPOINT_SECS=str(state_secs), PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = time.monotonic()
        self.phases: dict[str, float] = {}

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, check=True, timeout=1800).stdout

    def publish(self, start_ms: int, rate: int, secs: int) -> int:
        record = self.work / "chunk.jsonl"
        self.cli("simulate", "--seed", "5", "--rate", str(rate), "--duration", str(secs), "--pace", "fast",
                 "--start-ms", str(start_ms), "--record", str(record), "--publish")
        return sum(1 for _ in record.open("rb"))

    def start(self) -> None:
        self.starts += 1
        log = (self.work / f"worker-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return bytes(r.read())

    def watermark(self) -> int:
        """The engine clock once recovered (0 while recovering or unreachable)."""
        try:
            health = json.loads(self.get("/api/v1/health"))
        except (OSError, ValueError):
            return 0
        self.phase("web")
        if health.get("recovering"):
            return 0
        self.phase("recovered")
        return int(health.get("watermark_ms") or 0)

    def phase(self, name: str) -> None:
        """The first time since the (re)start that ``name`` was seen (seconds; kept once)."""
        self.phases.setdefault(name, round(time.monotonic() - self.started_at, 1))

    def metric(self, name: str) -> float:
        try:
            for line in self.get("/metrics").decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        except OSError:
            pass
        return float("nan")

    def caught_up(self, target_ms: int, timeout_s: float = 1800) -> float:
        """Seconds until the watermark reaches ``target_ms``; ``phases`` then tells when the web
        server first answered (web), recovery was over (recovered) and the head was reached."""
        started = self.started_at = time.monotonic()
        self.phases = {}
        while time.monotonic() - started < timeout_s:
            assert self.proc is not None and self.proc.poll() is None, "the worker exited"
            if self.watermark() >= target_ms:
                self.phase("head")
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"watermark not at {target_ms} within {timeout_s}s")

    def replayed(self) -> int:
        found = REPLAYED.findall((self.work / f"worker-{self.starts}.log").read_text(errors="replace"))
        return int(found[-1]) if found else -1


class Worker:
    """One of the takeover run's two workers: its own web port and data dir."""

    def __init__(self, env: dict[str, str], work: Path, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.log = work / f"worker-{name}.log"
        self.env = dict(env, MEVRISK_WEB_PORT=str(self.port), MEVRISK_DATA_DIR=str(work / f"data-{name}"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(self.port)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        """Wait for the worker until `deadline` (monotonic), then SIGKILL it."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def health(self) -> dict[str, Any]:
        """``/api/v1/health`` ({} while unreachable or busy; a 503 body is still read)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        except OSError:
            return {}
        try:
            found = json.loads(body)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def at(self, target_ms: int) -> dict[str, Any] | None:
        """Its health if it is recovered with its watermark at `target_ms`, else None."""
        health = self.health()
        if health.get("recovering", True) or int(health.get("watermark_ms") or 0) < target_ms:
            return None
        return health

    def log_text(self, offset: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def _partitions(members: list[Any], topic: str, port: int) -> list[int] | None:
    """The `topic` partitions the group assigned the static member of web port `port` (its member id
    is ``<host>:<port>-<uuid>``), or None if it is not a member."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    for member in members:
        member_id, assignment = member[0], member[-1]
        if f":{port}-" not in member_id:
            continue
        if not assignment:
            return []
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        return sorted(p for t, ps in decoded.assignment if t == topic for p in ps)
    return None


async def group_assignment(bootstrap: str, group_id: str, topic: str,
                           workers: list[Worker]) -> tuple[str, list[list[int] | None]]:
    """(group state, each worker's partitions of `topic`: None if it is not a member)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    group = response.groups[0]
    state, members = group[2], group[5]
    return str(state), [_partitions(members, topic, w.port) for w in workers]


class Takeover:
    """The takeover run: its own topic prefix and app id, a history, two workers, one killed."""

    def __init__(self, bootstrap: str, state_secs: float, work: Path) -> None:
        self.work = work
        self.bootstrap = bootstrap
        self.prefix = f"bt{uuid.uuid4().hex[:8]}."
        self.app_id = f"{self.prefix}app"
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, MEVRISK_TOPIC_PREFIX=self.prefix,
                        MEVRISK_APP_ID=self.app_id, MEVRISK_BAR_MS="1000",
                        MEVRISK_CHECKPOINT_SECRET=CHECKPOINT_SECRET, MEVRISK_STANDBY_REPLICAS="1",
                        MEVRISK_STATE_CHECKPOINT_SECS=str(state_secs), PYTHONUNBUFFERED="1")
        self.workers = [Worker(self.env, work, f"takeover-{i}") for i in (1, 2)]
        self.live: subprocess.Popen[bytes] | None = None
        self.partitions: list[list[int]] = [[], []]
        self.local: list[list[str]] = [[], []]
        self.survivor_log_offset = 0
        self.kill_ms = 0

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, check=True, timeout=1800).stdout

    def publish(self, start_ms: int, rate: int, secs: int) -> int:
        record = self.work / "takeover-history.jsonl"
        self.cli("simulate", "--seed", "5", "--rate", str(rate), "--duration", str(secs), "--pace", "fast",
                 "--start-ms", str(start_ms), "--record", str(record), "--publish")
        return sum(1 for _ in record.open("rb"))

    def check_alive(self) -> None:
        for w in self.workers:
            if not w.alive():
                raise RuntimeError(f"worker {w.name} exited; see {w.log}")

    def settle(self, head_ms: int, timeout_s: float = 1800) -> None:
        """Start both workers; return once one poll finds both recovered at `head_ms`, the group
        stable with input partitions assigned to each of them (none to both), and their local
        portfolios disjoint and not both empty."""
        topic = f"{self.prefix}mev.positions"
        for w in self.workers:
            w.start()
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            time.sleep(0.5)
            self.check_alive()
            healths = [w.at(head_ms) for w in self.workers]
            if any(h is None for h in healths):
                continue
            local = [list(h.get("portfolios", {}).get("local", [])) for h in healths if h is not None]
            if set(local[0]) & set(local[1]) or not (local[0] or local[1]):
                continue
            try:
                state, parts = asyncio.run(group_assignment(self.bootstrap, self.app_id, topic, self.workers))
            except Exception:  # the coordinator busy with the rebalance: ask again
                continue
            if state != "Stable" or any(not p for p in parts):
                continue
            p0, p1 = parts[0] or [], parts[1] or []
            if set(p0) & set(p1):
                continue
            if all(w.at(head_ms) is not None for w in self.workers):  # no rebalance since
                self.partitions, self.local = [p0, p1], local
                return
        raise TimeoutError(f"takeover: both workers not settled at {head_ms} within {timeout_s}s")

    def start_live(self, start_ms: int, rate: int) -> None:
        with (self.work / "takeover-live.log").open("wb") as log:
            self.live = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "simulate", "--seed", "6", "--rate", str(rate),
                 "--duration", "86400", "--pace", "realtime", "--start-ms", str(start_ms), "--publish"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def consuming(self, target_ms: int, timeout_s: float = 600) -> None:
        """Until both workers are recovered with live input events at `target_ms`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.check_alive()
            assert self.live is not None
            if self.live.poll() is not None:
                raise RuntimeError(f"the live simulator exited; see {self.work / 'takeover-live.log'}")
            healths = [w.at(target_ms) for w in self.workers]
            if all(h is not None and int(h.get("last_input_event_ts_ms") or 0) >= target_ms for h in healths):
                return
            time.sleep(0.5)
        raise TimeoutError(f"takeover: live input not at {target_ms} on both workers within {timeout_s}s")

    def victim(self) -> int:
        """The worker to kill: one that owns a portfolio; of two, the one without partition 0."""
        owners = [i for i in (0, 1) if self.local[i]]
        return next((i for i in owners if 0 not in self.partitions[i]), owners[0])

    async def kill_and_watch(self, victim: int, timeout_s: float) -> tuple[float, float, int]:
        """Kill worker `victim` (SIGKILL) and read the run's ``risk.snapshots`` from before the kill
        until the survivor published a new snapshot of each of its portfolios: (seconds from the
        kill to the last of those, to the first, stale republished snapshots)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = f"{self.prefix}risk.snapshots"
        portfolios = set(self.local[victim])
        survivor = self.workers[1 - victim]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            metadata = await consumer._client.fetch_all_metadata()  # no public listing call
            tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]
            assert tps, f"no partitions for {topic}"
            consumer.assign(tps)
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            for tp in tps:  # a tail from before the kill: the newest snapshot the dead worker published
                consumer.seek(tp, max(begin[tp], end[tp] - 2_000))
            self.survivor_log_offset = survivor.log.stat().st_size
            kill_ms = self.kill_ms = int(time.time() * 1000)
            self.workers[victim].kill()
            newest_before: dict[str, int] = {}
            first: dict[str, float] = {}
            republished = 0
            deadline = time.monotonic() + timeout_s
            while not portfolios <= set(first):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"takeover: no new snapshot of {sorted(portfolios - set(first))} "
                                       f"within {timeout_s}s of the kill")
                if not survivor.alive():
                    raise RuntimeError(f"the survivor {survivor.name} exited; see {survivor.log}")
                batch = await consumer.getmany(timeout_ms=500)
                for message in (m for messages in batch.values() for m in messages):
                    key = (message.key or b"").decode(errors="replace")
                    if key not in portfolios:
                        continue
                    ts = int(json.loads(message.value).get("ts_ms", 0))
                    if message.timestamp <= kill_ms:
                        newest_before[key] = max(newest_before.get(key, 0), ts)
                    elif ts <= newest_before.get(key, -1):
                        republished += 1
                    elif key not in first:
                        first[key] = (message.timestamp - kill_ms) / 1000
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return max(first.values()), min(first.values()), republished

    def since_kill(self, line: str) -> float:
        """Seconds from the kill to the time stamp of log `line` (local time, ms; nan without one)."""
        stamp = LOG_STAMP.search(line)
        if stamp is None:
            return float("nan")
        at = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000
        return at - self.kill_ms / 1000

    def rebuild(self, survivor: Worker, timeout_s: float = 600) -> list[str]:
        """The survivor's rebuild after the kill, from its log (waits for its ``recovery:`` line)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = survivor.log_text(self.survivor_log_offset).splitlines()
            rebuilt = [line for line in lines if REBUILT.search(line)]
            if rebuilt or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assigned = [(m.group(1).replace(" ", ""), line) for line in lines if (m := ASSIGNMENT.search(line))]
        line = rebuilt[-1] if rebuilt else ""
        replayed = REPLAYED.search(line)
        took = REBUILD_S.search(line)
        restored = "recovery: restored state" in line
        return [
            f"takeover_evicted_s={self.since_kill(assigned[-1][1]) if assigned else float('nan'):.1f}",
            f"takeover_rebuilt_s={self.since_kill(line):.1f}",
            f"takeover_restored={str(restored).lower() if line else 'unknown'}",
            f"takeover_replayed={replayed.group(1) if replayed else -1}",
            f"takeover_rebuild_s={float(took.group(1)) if took else float('nan'):.1f}",
            f"takeover_survivor_partitions={assigned[-1][0] if assigned else ''}",
            f"takeover_assignment_changes={len(assigned)}",
        ]

    def stop(self) -> None:
        """SIGTERM to the live simulator and every worker at once, SIGKILL to any still running 30 s later."""
        if self.live is not None and self.live.poll() is None:
            self.live.send_signal(signal.SIGTERM)
        for w in self.workers:
            w.terminate()
        deadline = time.monotonic() + 30
        if self.live is not None:
            try:
                self.live.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.live.kill()
                self.live.wait(timeout=30)
        for w in self.workers:
            w.reap(deadline)


def run_takeover(bootstrap: str, args: argparse.Namespace, work: Path) -> list[str]:
    run = Takeover(bootstrap, args.state_secs, work)
    try:
        run.cli("topics", "create")
        t0 = int(time.time() * 1000) - args.takeover_secs * 1000 - 60_000  # behind the wall clock
        events = run.publish(t0, args.rate, args.takeover_secs)
        run.settle(t0 + args.takeover_secs * 1000 - HEAD_SLACK_MS)
        # the idle heartbeat moved the clocks on past the history: the live events start after them
        clocks = [int(w.health().get("watermark_ms") or 0) for w in run.workers]
        live_ms = max(clocks) + 15_000
        run.start_live(live_ms, args.live_rate)
        run.consuming(live_ms + 5_000)
        victim = run.victim()
        takeover_s, first_s, republished = asyncio.run(run.kill_and_watch(victim, 900))
        rebuild = run.rebuild(run.workers[1 - victim])
    finally:
        run.stop()
    return [
        f"takeover_events={events}",
        f"takeover_live_rate={args.live_rate}",
        f"takeover_killed={run.workers[victim].name}",
        f"takeover_killed_partitions={','.join(map(str, run.partitions[victim]))}",
        f"takeover_killed_leader={str(0 in run.partitions[victim]).lower()}",
        f"takeover_portfolios={','.join(run.local[victim])}",
        f"takeover_survivor_portfolios={','.join(run.local[1 - victim])}",
        f"takeover_kill_wall={time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(run.kill_ms / 1000))}"
        f".{run.kill_ms % 1000:03d}",
        f"takeover_s={takeover_s:.1f}",
        f"takeover_first_s={first_s:.1f}",
        *rebuild,
        f"takeover_republished={republished}",
        f"takeover_workdir={work}",
    ]


def _phases(phases: dict[str, float]) -> str:
    return ",".join(f"{name}:{at}" for name, at in phases.items())


def aligned_start(raw_t0: int, chunk_ms: int, state_ms: int) -> int:
    """The history's first event time, near ``raw_t0``, such that the H head lies half a checkpoint
    interval after a checkpoint instant; the 4H head does too when 3 chunks are a whole number of
    intervals (the default 300 s chunks and 60 s interval): both kills then find their last
    checkpoint equally far behind (the average case), and h4 / h1 measures growth with history."""
    if state_ms <= 0:
        return raw_t0
    head_h1 = (raw_t0 + chunk_ms) // state_ms * state_ms + state_ms // 2
    return head_h1 - chunk_ms


def run_recovery(bootstrap: str, args: argparse.Namespace, work: Path) -> list[str]:
    bench = Bench(bootstrap, args.state_secs, work)
    try:
        bench.cli("topics", "create")
        chunk_ms = args.secs * 1000
        raw_t0 = int(time.time() * 1000) - 4 * chunk_ms - 120_000  # event times behind the wall clock
        t0 = aligned_start(raw_t0, chunk_ms, int(args.state_secs * 1000))
        events = bench.publish(t0, args.rate, args.secs)
        bench.start()
        bench.caught_up(t0 + chunk_ms - 5_000)
        time.sleep(5)  # the last checkpoint written
        bench.kill()
        bench.start()
        h1 = bench.caught_up(t0 + chunk_ms - 5_000)
        phases_h1 = dict(bench.phases)
        replayed_h1 = bench.replayed()
        events_h1 = events
        for i in range(1, 4):
            events += bench.publish(t0 + i * chunk_ms, args.rate, args.secs)
        bench.caught_up(t0 + 4 * chunk_ms - 5_000)
        time.sleep(5)
        take_ms = bench.metric("mevrisk_state_checkpoint_take_seconds") * 1000
        size = bench.metric("mevrisk_state_checkpoint_bytes")
        bench.kill()
        bench.start()
        h4 = bench.caught_up(t0 + 4 * chunk_ms - 5_000)
        phases_h4 = dict(bench.phases)
        replayed_h4 = bench.replayed()
    finally:
        bench.stop()
    return [
        f"state_secs={args.state_secs}",
        f"events_h1={events_h1}",
        f"events_h4={events}",
        f"recovery_s_h1={h1:.1f}",
        f"recovery_s_h4={h4:.1f}",
        f"recovery_growth_ratio={h4 / h1:.2f}",
        f"recovery_phases_h1={_phases(phases_h1)}",
        f"recovery_phases_h4={_phases(phases_h4)}",
        f"replayed_h1={replayed_h1}",
        f"replayed_h4={replayed_h4}",
        f"checkpoint_take_ms={take_ms:.0f}",
        f"checkpoint_bytes={size:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--secs", type=int, default=300)
    parser.add_argument("--state-secs", type=float, default=60.0)
    parser.add_argument("--takeover", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure a peer's takeover of a killed worker (default: on)")
    parser.add_argument("--only", choices=("recovery", "takeover"), default=None,
                        help="run only this part")
    parser.add_argument("--takeover-secs", type=int, default=120, help="history of the takeover run")
    parser.add_argument("--live-rate", type=int, default=200, help="live events/s during the takeover")
    parser.add_argument("--broker-port", type=int, default=BROKER_PORT)
    args = parser.parse_args()
    recovery = args.only != "takeover"
    takeover = args.only == "takeover" or (args.takeover and args.only is None)
    sys.path.insert(0, str(REPO))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker_port = "external"
    if not bootstrap:
        from streams.broker import LocalBroker, start

        broker = LocalBroker(port=args.broker_port, controller_port=args.broker_port + 1)
        start(broker)
        bootstrap = broker.bootstrap
        broker_port = str(args.broker_port)
    tmp = tempfile.mkdtemp(prefix="bench-recovery-")  # kept: the worker logs
    lines: list[str] = []
    if recovery:
        lines += run_recovery(bootstrap, args, Path(tmp))
    if takeover:
        lines += run_takeover(bootstrap, args, Path(tmp))
    for line in lines:
        print(line)
    print(f"broker_port={broker_port}")
    print(f"workdir={tmp}")


if __name__ == "__main__":
    main()

"""Scale-out against the real broker: does a second worker split the portfolio work?

A portfolio-heavy history is published: the simulator's default desk with its strategies spread
over ``--portfolios`` portfolios (two strategies each, ``pf00``, ``pf01``, ...; ``mevrisk simulate``
has no such option, so the benchmark builds the config and calls ``run_simulation`` itself),
``--rate`` events/s of event time for ``--secs``, 1 s bars, state checkpoints on
(``MEVRISK_STATE_CHECKPOINT_SECS=60``: a worker replays and holds only the input partitions it
owns). Run 1: one worker in a fresh consumer group catches up on the history; ``one_worker_s`` is
the wall time from its start until its watermark (``/api/v1/health`` ``watermark_ms``, not
``recovering``) is at the head (the last event time minus 5 s). Run 2: two workers in another fresh
group, started together; ``two_workers_s`` is the time until both are at the head. Each run has its
own topic prefix and app id (the same history is published to each), so run 2 reads nothing run 1
wrote. The method of ``/work/shared/measure/scaleout.sh``.

Prints key=value lines: events, portfolios, one_worker_s, two_workers_s, one_worker_events_per_s,
two_workers_events_per_s (aggregate), scaleout_ratio (one_worker_s / two_workers_s: 2 is a perfect
split, 1 none), w0_released, w0_local_portfolios (the one worker), w1_/w2_released and
w1_/w2_local_portfolios (the two workers: ``pipeline.released`` and ``len(portfolios.local)`` of
their health in the poll that found both at the head), w1_s, w2_s (when each first reached the
head), w1_/w2_assignment_changes (``assignment changed`` lines in each log: one is the rebalance
when the second joins, more means a worker lost its partitions on the way, e.g. a missed session),
portfolio_split (min / max of the two local portfolio counts: 1 is an even split;
both holding every portfolio gives 1 too, so read the counts; the portfolios hash onto the input
partitions unevenly, so the split also depends on which partitions each worker is given),
broker_port, workdir (the worker logs).

Run: .venv/bin/python benchmarks/bench_scaleout.py [--rate 1000] [--secs 120] [--portfolios 24]
(``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker of its own on port 59292).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
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
BROKER_PORT = 59292
SEED = 21
HEAD_SLACK_MS = 5_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def portfolio_config(portfolios: int) -> Any:
    """The default desk with its strategies spread over `portfolios` portfolios, two each
    (strategy ``<name>-<portfolio>``, cycling through the default strategies)."""
    from streams.sim.config import default_config

    base = default_config()
    kinds = base.strategies
    strategies = tuple(
        dataclasses.replace(spec, name=f"{spec.name}-pf{k:02d}", portfolio=f"pf{k:02d}")
        for k in range(portfolios) for spec in (kinds[(2 * k) % len(kinds)], kinds[(2 * k + 1) % len(kinds)]))
    return dataclasses.replace(base, strategies=strategies)


class Worker:
    def __init__(self, env: dict[str, str], work: Path, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.log = work / f"worker-{name}.log"
        self.env = dict(env, MEVRISK_WEB_PORT=str(self.port), MEVRISK_DATA_DIR=str(work / f"data-{name}"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.at_head_s: float | None = None
        self.last_health: dict[str, Any] = {}

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "-l", "warn", "--web-port", str(self.port)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
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


class Bench:
    """One run: its own topic prefix and app id (a fresh consumer group), the history, n workers."""

    def __init__(self, bootstrap: str, work: Path, run: str) -> None:
        self.work = work
        self.run = run
        self.bootstrap = bootstrap
        self.prefix = f"so{uuid.uuid4().hex[:8]}."
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, MEVRISK_TOPIC_PREFIX=self.prefix,
                        MEVRISK_APP_ID=f"{self.prefix}app", MEVRISK_BAR_MS="1000",
                        MEVRISK_CHECKPOINT_SECRET="bench-scaleout-checkpoint-secret",
                        MEVRISK_STATE_CHECKPOINT_SECS="60", PYTHONUNBUFFERED="1")
        self.workers: list[Worker] = []

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, check=True, timeout=1800).stdout

    def publish(self, start_ms: int, rate: int, secs: int, portfolios: int) -> int:
        """Create the run's topics and publish the history to them; the number of events sent."""
        from streams.sim.publisher import run_simulation

        self.cli("topics", "create")
        stats = asyncio.run(run_simulation(
            seed=SEED, rate_eps=rate, duration_s=secs, bootstrap=self.bootstrap, pace="fast",
            start_ms=start_ms, controls_topic=None, config=portfolio_config(portfolios),
            topic_prefix=self.prefix))
        if stats.failed:
            raise RuntimeError(f"publishing the history: {stats.failed} events refused")
        return stats.sent

    def catch_up(self, n: int, target_ms: int, timeout_s: float = 1800) -> float:
        """Start `n` workers together; the wall time until one poll finds every one's watermark at
        `target_ms` (a worker that lost the group and is recovering again counts as not there)."""
        self.workers = [Worker(self.env, self.work, f"{self.run}-{i}") for i in range(1, n + 1)]
        started = time.monotonic()
        for w in self.workers:
            w.start()
        while time.monotonic() - started < timeout_s:
            at_head = 0
            for w in self.workers:
                assert w.proc is not None
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited with {w.proc.returncode}; see {w.log}")
                health = w.health()
                w.last_health = health
                if not health.get("recovering", True) and int(health.get("watermark_ms") or 0) >= target_ms:
                    at_head += 1
                    if w.at_head_s is None:
                        w.at_head_s = time.monotonic() - started
            if at_head == n:
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"run {self.run}: watermark not at {target_ms} within {timeout_s}s")

    def report(self) -> list[tuple[int, int, int]]:
        """(released, local portfolios, assignment changes) per worker: the first two from its health
        in the poll that found every worker at the head, the last from its log."""
        out = []
        for w in self.workers:
            health = w.last_health
            changes = w.log.read_text(errors="replace").count("assignment changed from")
            out.append((int(health.get("pipeline", {}).get("released", -1)),
                        len(health.get("portfolios", {}).get("local", [])) if health else -1, changes))
        return out

    def stop(self) -> None:
        """SIGTERM to every worker at once (so no survivor rebalances onto the others' partitions),
        SIGKILL to any still running 30 s later."""
        for w in self.workers:
            w.terminate()
        deadline = time.monotonic() + 30
        for w in self.workers:
            w.reap(deadline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--secs", type=int, default=120)
    parser.add_argument("--portfolios", type=int, default=24)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker_port = "external"
    if not bootstrap:
        from streams.broker import LocalBroker, start

        broker = LocalBroker(port=BROKER_PORT, controller_port=BROKER_PORT + 1)
        start(broker)
        bootstrap = broker.bootstrap
        broker_port = str(BROKER_PORT)
    tmp = tempfile.mkdtemp(prefix="bench-scaleout-")  # kept: the worker logs
    t0 = int(time.time() * 1000) - args.secs * 1000 - 60_000  # event times behind the wall clock
    target = t0 + args.secs * 1000 - HEAD_SLACK_MS
    one = Bench(bootstrap, Path(tmp), "one")
    two = Bench(bootstrap, Path(tmp), "two")
    try:
        events = one.publish(t0, args.rate, args.secs, args.portfolios)
        one_s = one.catch_up(1, target)
        [(w0_released, w0_local, _)] = one.report()
        one.stop()
        events_two = two.publish(t0, args.rate, args.secs, args.portfolios)
        assert events_two == events, f"the histories differ: {events} vs {events_two} events"
        two_s = two.catch_up(2, target)
        [(w1_released, w1_local, w1_changes), (w2_released, w2_local, w2_changes)] = two.report()
    finally:
        one.stop()
        two.stop()
    w1_s, w2_s = (w.at_head_s or float("nan") for w in two.workers)
    print(f"events={events}")
    print(f"portfolios={args.portfolios}")
    print(f"one_worker_s={one_s:.1f}")
    print(f"two_workers_s={two_s:.1f}")
    print(f"one_worker_events_per_s={events / one_s:.0f}")
    print(f"two_workers_events_per_s={events / two_s:.0f}")
    print(f"scaleout_ratio={one_s / two_s:.2f}")
    print(f"w0_released={w0_released}")
    print(f"w0_local_portfolios={w0_local}")
    print(f"w1_released={w1_released}")
    print(f"w2_released={w2_released}")
    print(f"w1_local_portfolios={w1_local}")
    print(f"w2_local_portfolios={w2_local}")
    print(f"w1_s={w1_s:.1f}")
    print(f"w2_s={w2_s:.1f}")
    print(f"w1_assignment_changes={w1_changes}")
    print(f"w2_assignment_changes={w2_changes}")
    print(f"portfolio_split={min(w1_local, w2_local) / max(w1_local, w2_local, 1):.2f}")
    print(f"broker_port={broker_port}")
    print(f"workdir={tmp}")


if __name__ == "__main__":
    main()

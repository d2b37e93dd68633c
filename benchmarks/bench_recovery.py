"""Restart recovery after kill -9 against the real broker (issue 15): does it grow with history?

One worker (1 s bars) with state checkpoints (``MEVRISK_STATE_CHECKPOINT_SECS``, default 30 s of
event time; ``--state-secs 0`` measures today's full replay instead). History H is published with
the simulator (``--rate`` events/s of event time for ``--secs``), the worker catches up, is killed
with SIGKILL and restarted: ``recovery_s_h1`` is the wall time from the restart until its watermark
is back at the head (within 5 s). Then 3 more chunks are published (4H in all), the worker catches
up live, is killed and restarted again: ``recovery_s_h4``. The method of
``/work/shared/measure/recovery_growth.sh``.

Prints key=value lines: events_h1, events_h4, recovery_s_h1, recovery_s_h4, recovery_growth_ratio
(h4 / h1), replayed_h1, replayed_h4 (partitioned input records the recovery replayed, from its
log line), checkpoint_take_ms, checkpoint_bytes (last take, from /metrics), state_secs.

Run: .venv/bin/python benchmarks/bench_recovery.py [--rate 1000] [--secs 250] [--state-secs 30]
(``KAFKA_BOOTSTRAP_SERVERS`` if set, else a local broker of its own on port 59092).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BROKER_PORT = 59092
REPLAYED = re.compile(r"recovery: .*?replayed (\d+) partitioned input records")


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
                        MEVRISK_CHECKPOINT_SECRET="bench-recovery-checkpoint-secret",
                        MEVRISK_STATE_CHECKPOINT_SECS=str(state_secs), PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

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
        return 0 if health.get("recovering") else int(health.get("watermark_ms") or 0)

    def metric(self, name: str) -> float:
        try:
            for line in self.get("/metrics").decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        except OSError:
            pass
        return float("nan")

    def caught_up(self, target_ms: int, timeout_s: float = 1800) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            assert self.proc is not None and self.proc.poll() is None, "the worker exited"
            if self.watermark() >= target_ms:
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"watermark not at {target_ms} within {timeout_s}s")

    def replayed(self) -> int:
        found = REPLAYED.findall((self.work / f"worker-{self.starts}.log").read_text(errors="replace"))
        return int(found[-1]) if found else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--secs", type=int, default=250)
    parser.add_argument("--state-secs", type=float, default=30.0)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.path.insert(0, str(REPO))
        from streams.broker import LocalBroker, start

        broker = LocalBroker(port=BROKER_PORT, controller_port=BROKER_PORT + 1)
        start(broker)
        bootstrap = broker.bootstrap
    tmp = tempfile.mkdtemp(prefix="bench-recovery-")  # kept: the worker logs
    if True:
        bench = Bench(bootstrap, args.state_secs, Path(tmp))
        try:
            bench.cli("topics", "create")
            chunk_ms = args.secs * 1000
            t0 = int(time.time() * 1000) - 4 * chunk_ms - 120_000  # event times behind the wall clock
            events = bench.publish(t0, args.rate, args.secs)
            bench.start()
            bench.caught_up(t0 + chunk_ms - 5_000)
            time.sleep(5)  # the last checkpoint written
            bench.kill()
            bench.start()
            h1 = bench.caught_up(t0 + chunk_ms - 5_000)
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
            replayed_h4 = bench.replayed()
        finally:
            bench.stop()
    print(f"state_secs={args.state_secs}")
    print(f"events_h1={events_h1}")
    print(f"events_h4={events}")
    print(f"recovery_s_h1={h1:.1f}")
    print(f"recovery_s_h4={h4:.1f}")
    print(f"recovery_growth_ratio={h4 / h1:.2f}")
    print(f"replayed_h1={replayed_h1}")
    print(f"replayed_h4={replayed_h4}")
    print(f"checkpoint_take_ms={take_ms:.0f}")
    print(f"checkpoint_bytes={size:.0f}")
    print(f"workdir={tmp}")


if __name__ == "__main__":
    main()

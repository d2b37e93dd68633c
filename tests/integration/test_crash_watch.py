"""The crash watch fails a test whose worker crashed: proved on a real worker with a real agent
crash (the test-only fault hook ``MEVRISK_FAULT_INJECT``), and on stand-in processes run through
pytest itself (pytester) for each way a worker can be seen dead."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import CrashWatch, Env, Worker, WorkerCrashed, produce, run

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000


def _position() -> bytes:
    """The simulator's first (valid) position."""
    from streams.sim.generator import Simulator

    sim = Simulator(seed=5, start_ms=START_MS, rate_eps=100, duration_s=5)
    first = next(e.value for e in sim if e.topic == "mev.positions" and isinstance(e.value, dict))
    return orjson.dumps(first)


def test_an_agent_crash_fails_the_watch(env: Env, start_worker: Callable[..., Worker],
                                        worker_watch: CrashWatch) -> None:
    """A worker whose positions agent raises on its first message (outside the pipeline's isolation)
    is seen dead by the watch: crash lines in the log, the worker's exit or /api/v1/health."""
    worker = start_worker(MEVRISK_FAULT_INJECT="apply_positions")
    worker_watch.raise_if_found()  # healthy until the first position arrives
    run(produce(env.bootstrap, [(env.topic("mev.positions"), b"alpha", _position())]))
    deadline = time.monotonic() + 60
    while not worker_watch.found and time.monotonic() < deadline:
        time.sleep(0.5)
    found = "\n".join(worker_watch.found)
    assert found, f"the watch did not see the injected crash within 60 s\n{worker.log_tail()}"
    with pytest.raises(WorkerCrashed):
        worker_watch.check()
    assert "injected fault" in worker.log_tail(100_000) or "exited" in found or "health" in found, found
    # the crash was the point of this test: forget it so the post-test check passes
    worker_watch.found.clear()
    worker_watch.workers.remove(worker)
    worker.proc.kill()
    worker.proc.wait(timeout=30)


# ---- the watch, through pytest, on stand-in processes ----------------------------------------------
CONFTEST = """
from tests.conftest import pytest_runtest_call  # the hook that runs the post-test checks
from tests.integration.conftest import worker_watch  # the fixture under test
"""

STAND_IN = '''
import subprocess, sys, time
from pathlib import Path

import pytest

from tests.integration.conftest import Worker, wait_until


def spawn(tmp_path: Path, code: str) -> Worker:
    """A process standing in for a worker: it runs ``code``; nothing listens on its web port."""
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    return Worker(proc=proc, web_port=1, log=log)


SLEEP = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
"""A stand-in that stops cleanly (exit 0) on SIGTERM, as the worker does."""
'''


@pytest.fixture
def stand_in(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(standin=STAND_IN)
    pytester.syspathinsert()
    return pytester


def _outcome(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_case="from standin import *\n\n" + body)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")


def test_a_quiet_worker_passes(stand_in: pytest.Pytester) -> None:
    result = _outcome(stand_in, """
def test_quiet(worker_watch, tmp_path):
    worker_watch.add(spawn(tmp_path, SLEEP))
    time.sleep(1)
""")
    result.assert_outcomes(passed=1)


def test_a_crash_line_in_the_log_fails_the_test(stand_in: pytest.Pytester) -> None:
    result = _outcome(stand_in, """
def test_crash_logged(worker_watch, tmp_path):
    line = "[ERROR] [^---Agent*: streams.ingest.apply_positions]: Crashed reason=RuntimeError('x')"
    worker_watch.add(spawn(tmp_path, f"print({line!r}); " + SLEEP))
    time.sleep(1)
""")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*WorkerCrashed*Crashed reason=RuntimeError*"])


def test_a_traceback_fails_the_test_unless_allowed(stand_in: pytest.Pytester) -> None:
    result = _outcome(stand_in, """
import re

def test_traceback(worker_watch, tmp_path):
    worker_watch.add(spawn(tmp_path, "print('Traceback (most recent call last):'); " + SLEEP))
    time.sleep(1)

def test_allowed(worker_watch, tmp_path):
    worker = spawn(tmp_path, "print('Traceback (most recent call last):'); " + SLEEP)
    worker.allow_log = re.compile("Traceback")
    worker_watch.add(worker)
    time.sleep(1)
""")
    result.assert_outcomes(failed=1, passed=1)


def test_an_exit_before_the_test_stops_the_worker_fails_it(stand_in: pytest.Pytester) -> None:
    result = _outcome(stand_in, """
def test_exit_zero(worker_watch, tmp_path):
    worker = worker_watch.add(spawn(tmp_path, "pass"))
    worker.proc.wait()

def test_exit_nonzero(worker_watch, tmp_path):
    worker = worker_watch.add(spawn(tmp_path, "raise SystemExit(3)"))
    worker.proc.wait()
""")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*exited with code 0 before the test stopped it*",
                                 "*exited with code 3 before the test stopped it*"])


def test_the_watch_fails_a_waiting_test_fast(stand_in: pytest.Pytester) -> None:
    """wait_until raises the crash the watch saw instead of waiting out its timeout."""
    result = _outcome(stand_in, """
def test_waits(worker_watch, tmp_path):
    worker_watch.add(spawn(tmp_path, "print('Crashed reason=x'); " + SLEEP))
    started = time.monotonic()
    with pytest.raises(AssertionError, match="Crashed reason=x"):
        wait_until(lambda: False, 60, "something that never comes")
    assert time.monotonic() - started < 20
    worker_watch.workers.pop().proc.kill()  # seen: the crash was the point
""")
    result.assert_outcomes(passed=1)


def test_a_nonzero_exit_after_sigterm_fails_and_kill_9_needs_the_marker(stand_in: pytest.Pytester) -> None:
    result = _outcome(stand_in, """
import signal

def test_unclean_stop(worker_watch, tmp_path):
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(1)); time.sleep(60)"
    worker = worker_watch.add(spawn(tmp_path, code))
    time.sleep(0.5)

def test_undeclared_kill(worker_watch, tmp_path):
    worker = worker_watch.add(spawn(tmp_path, SLEEP))
    time.sleep(0.5)  # its SIGTERM handler is installed
    worker.stop(signal.SIGKILL)

def test_declared_kill(worker_watch, tmp_path):
    worker = worker_watch.add(spawn(tmp_path, SLEEP))
    worker.may_kill = True
    worker.stop(signal.SIGKILL)
""")
    # the unclean stop passes its body and errors at teardown, where the workers are stopped
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*exited with code 1 after SIGTERM*"])
    result.stdout.fnmatch_lines(["*declares it: @pytest.mark.kills_worker*"])


def test_a_dead_component_on_health_fails_the_test(stand_in: pytest.Pytester, tmp_path: Path) -> None:
    result = _outcome(stand_in, """
import json
from http.server import BaseHTTPRequestHandler
from tests.integration.conftest import loopback_http


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "down", "dead": ["apply_positions"],
                           "components": {"apply_positions": "crashed", "ingest": "running"}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_down(worker_watch, tmp_path):
    with loopback_http(Health) as server:
        worker = worker_watch.add(spawn(tmp_path, SLEEP))
        worker.web_port = server.server_port
        time.sleep(3)
        worker_watch.check()
""")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*health answered 503, status 'down', dead components ?'apply_positions'?*"])

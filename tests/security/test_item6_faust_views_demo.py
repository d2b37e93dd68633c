"""Issue 12 item 6, the parts outside the API views: Faust's own web views are off on a live
worker, and the demo's admin token is generated per run (``deploy/demo.sh``), printed once.

Both run real workers against the real broker (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.settings import REPO_ROOT
from tests.integration.conftest import Env, env, free_port, start_worker, wait_until, worker_watch

__all__ = ["env", "start_worker", "worker_watch"]  # the integration fixtures, reused

pytestmark = pytest.mark.integration

FAUST_VIEWS = ("/router/", "/table/", "/graph/", "/assignment/")
"""Faust's built-in views: cluster topology, table contents, the service graph, partition map."""


def _get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_faust_router_and_table_views_answer_404(start_worker) -> None:
    worker = start_worker()
    assert _get(worker.web_port, "/metrics")[0] == 200  # the web server is up and serving ours
    for path in FAUST_VIEWS:
        status, body = _get(worker.web_port, path)
        assert status == 404, f"{path} answered {status}: {body[:200]!r}"
    # a table name Faust would have served under /table/<name>/
    assert _get(worker.web_port, "/table/fingerprint_to_deliveries/")[0] == 404


class _Demo:
    """``deploy/demo.sh`` on the test's broker and topics; stdout collected by a thread."""

    def __init__(self, env: Env, tmp: Path, run: int) -> None:
        self.web_port = free_port()
        prefix = f"{env.prefix}demo{run}."  # fresh topics and group per run, as `make demo` has
        env.mevrisk("topics", "create", MEVRISK_TOPIC_PREFIX=prefix)
        environ = env.environ(
            MEVRISK_TOPIC_PREFIX=prefix,
            MEVRISK_APP_ID=f"{prefix}app",
            MEVRISK_WEB_PORT=str(self.web_port),
            KAFKA_PORT=str(free_port()),  # its Ctrl-C `broker stop` finds no broker of ours there
            MEVRISK_DEMO_DIR=str(tmp),
            PYTHONPATH=str(REPO_ROOT),  # this checkout's code, whatever the venv's editable install
        )
        for name in ("MEVRISK_API_TOKENS", "MEVRISK_DEMO_TOKEN", "MEVRISK_API_TOKENS_FILE"):
            environ.pop(name, None)
        self.log_dir = tmp
        self.proc = subprocess.Popen(
            ["bash", str(REPO_ROOT / "deploy" / "demo.sh")], cwd=REPO_ROOT, env=environ,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def token(self) -> str:
        def printed() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo.sh exited with {self.proc.returncode}:\n{self.output}")
            found = re.search(r"dashboard: .*token[^:]*: (\S+?)\)", self.output)
            return found.group(1) if found else None

        return wait_until(printed, 180, "the demo's banner with its admin token")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # bash's trap stops the worker and simulator
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._reader.join(timeout=10)


def _whoami(port: int, token: str) -> tuple[int, dict]:
    status, body = _get(port, "/api/v1/whoami", token)
    return status, orjson.loads(body) if status == 200 else {}


@pytest.mark.parametrize("runs", [2])
def test_demo_generates_an_admin_token_per_run(env: Env, tmp_path: Path, runs: int) -> None:
    tokens = []
    for run in range(runs):
        demo = _Demo(env, tmp_path / f"demo-{run}", run)
        try:
            token = demo.token()
            assert len(token) >= 32 and token != "demo-admin-token"
            _status, me = wait_until(lambda demo=demo, token=token: (
                result if (result := _whoami(demo.web_port, token))[0] == 200 else None),
                120, "the demo worker's API accepting the printed token")
            assert me["role"] == "admin" and not me["anonymous"]
            fixed = _whoami(demo.web_port, "demo-admin-token")
            assert not (fixed[0] == 200 and fixed[1].get("role") == "admin"), "the old fixed token works"
            assert demo.output.count(token) == 1, "the token is printed exactly once"
            tokens.append(token)
        finally:
            demo.stop()
        worker_log = (demo.log_dir / "worker.log").read_text(errors="replace")
        assert token not in worker_log
        assert "stopping demo" in demo.output
    assert len(set(tokens)) == runs, "each run has its own token"

"""The Faust app's web server listens where the settings say, loopback by default."""

from __future__ import annotations

import subprocess
import sys

from streams.settings import REPO_ROOT


def _web_conf(**env: str) -> list[str]:
    code = "from streams.app import app; print(app.conf.web_bind, app.conf.web_host)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={"PATH": "/usr/bin", **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_web_server_binds_loopback_by_default() -> None:
    assert _web_conf() == ["127.0.0.1", "127.0.0.1"]  # Faust alone would bind 0.0.0.0


def test_web_bind_follows_the_advertised_host_unless_set() -> None:
    assert _web_conf(MEVRISK_WEB_HOST="10.0.0.5") == ["10.0.0.5", "10.0.0.5"]
    assert _web_conf(MEVRISK_WEB_HOST="worker", MEVRISK_WEB_BIND="0.0.0.0") == ["0.0.0.0", "worker"]

"""Real broker, real worker, real HTTP receiver: a flash-crash alert is delivered once as a signed
webhook, and the delivery outcome lands in risk.audit."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from tests.integration.conftest import Env, consume, loopback_http, run, wait_until

pytestmark = pytest.mark.integration

START_MS = 1_767_225_600_000
SECRET = "integration-secret"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_receiver():
    _Hook.received = []
    with loopback_http(_Hook) as server:
        yield server


def test_alert_is_delivered_once_as_signed_webhook(env: Env, start_worker, tmp_path: Path,
                                                    webhook_receiver) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(json.dumps({
        "channels": {"webhook": {
            "type": "webhook", "url": f"http://127.0.0.1:{webhook_receiver.server_port}/hook",
            "secret_env": "MEVRISK_WEBHOOK_SECRET", "enabled": True, "timeout_secs": 5,
            "allow_insecure": True,  # the loopback receiver speaks plain http://
            "max_attempts": 3, "backoff": {"initial_secs": 0.1, "multiplier": 2, "max_secs": 1},
        }},
        "routes": [{"channels": ["webhook"]}],
        "grouping": {"group_by": ["alertname", "portfolio"], "group_wait_secs": 0,
                     "group_interval_secs": 0},
        "digest": {"enabled": False},
    }))
    recording = tmp_path / "input.jsonl"
    env.mevrisk("simulate", "--seed", "11", "--rate", "150", "--duration", "100",
                "--start-ms", str(START_MS), "--incident", "flash-crash@60s/20s", "--record", str(recording))
    start_worker(MEVRISK_BAR_MS="1000", MEVRISK_IDLE_HEARTBEAT_SECS="3",
                 MEVRISK_CHANNELS_FILE=str(channels), MEVRISK_WEBHOOK_SECRET=SECRET)
    env.mevrisk("replay", str(recording))

    alerts = wait_until(lambda: run(consume(env.bootstrap, env.topic("risk.alerts"), 1, timeout=5)), 90,
                        "a firing alert")
    wait_until(lambda: _Hook.received, 60, "the webhook delivery")
    headers, body = _Hook.received[0]
    by_name = {k.lower(): v for k, v in headers.items()}
    timestamp = by_name["x-mevrisk-timestamp"]  # the signature covers "<timestamp>.<body>"
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(by_name["x-mevrisk-signature"], f"sha256={expected}")
    payload = orjson.loads(body)
    delivered_ids = json.dumps(payload)
    assert alerts[0]["event_id"] in delivered_ids or alerts[0]["id"] in delivered_ids

    def delivery_audited() -> list[dict]:
        audit = run(consume(env.bootstrap, env.topic("risk.audit"), 10_000, timeout=5))
        return [r for r in audit
                if r["stream"].startswith("notify@") and r["payload"]["outcome"] == "delivered"]

    records = wait_until(delivery_audited, 60, "the delivery outcome in risk.audit")
    assert records[0]["payload"]["channel"] == "webhook"
    keys = [{k.lower(): v for k, v in h.items()}.get("idempotency-key") for h, _ in _Hook.received]
    assert len(keys) == len(set(keys)), "each notification is delivered once"

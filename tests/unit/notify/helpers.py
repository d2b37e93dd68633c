"""Shared constants and the alert-event factory for the notification tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import Envelope

SECRET = "whsec-test-0123456789"
SMTP_USER, SMTP_PASSWORD = "alerts", "smtp-pass-42"
SMS_SID, SMS_TOKEN = "AC123", "sms-token-xyz"
PD_KEY = "pd-routing-key-abc"


def make_event(**overrides: Any) -> dict[str, Any]:
    """An alert event as the alert core publishes it on ``risk.alerts``."""
    event: dict[str, Any] = {
        "event_id": "evt-1",
        "id": "alert-1",
        "fingerprint": "fp-var95-alpha",
        "rule": "var95_breach",
        "rule_name": "VaR95Breach",
        "transition": "firing",
        "status": "firing",
        "severity": "high",
        "escalation_level": 0,
        "labels": {"alertname": "VaR95Breach", "portfolio": "alpha", "strategy": "arb-1"},
        "annotations": {"summary": "VaR 95 is $12,500 (limit $10,000)",
                        "description": "Portfolio alpha VaR 95 above limit for 2m"},
        "message": "VaR 95 above $10,000",
        "startsAt": "2026-11-27T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "ts_ms": 1_795_000_000_000,
        "values": {"var_95_usd": 12500.0},
        "channels": [],
        "notify": True,
    }
    event.update(overrides)
    return event


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float


@dataclass
class Receiver:
    """Scriptable HTTP peer: ``script[path]`` is a list of statuses or ``"hang"``."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[int | str]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answered: list[tuple[str, int]] = field(default_factory=list)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        loop = asyncio.get_running_loop()
        self.requests.append(Received(request.path, dict(request.headers), body, loop.time()))
        self.arrived.set()
        steps = self.script.get(request.path)
        step = steps.pop(0) if steps else 200
        if step == "hang":
            await asyncio.sleep(3600)
        status = int(step)
        self.answered.append((request.path, status))
        return web.json_response({"status": "ok" if status < 300 else "error"}, status=status)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MailSink:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SmtpPeer:
    sink: MailSink
    port: int


class JsonFileStore(MutableMapping[str, Any]):
    """A durable ledger store for crash tests: every write replaces a JSON file atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] = (
            json.loads(path.read_text()) if path.exists() else {}
        )

    def _flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(self._data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._flush()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._flush()

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

"""kill -9 between firing and delivery: after restart the notification goes out once.

A child process owns the dispatcher and a durable (fsynced JSON file) ledger; it
is SIGKILLed while its webhook request hangs. A restarted dispatcher over the
same ledger resumes the pending delivery, and a replay of the same input event
sends nothing more. (With Faust, the ledger is a changelogged table instead.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from agents.notify.config import parse_config
from agents.notify.delivery import Dispatcher, OutcomeRecord
from agents.notify.ledger import DeliveryLedger
from tests.unit.notify.crash_child import crash_config
from tests.unit.notify.helpers import JsonFileStore, Receiver, make_event

REPO = Path(__file__).resolve().parents[3]


async def test_kill_9_before_delivery_then_restart_delivers_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    store_path = tmp_path / "ledger.json"
    event = make_event(channels=["webhook"])
    receiver.script["/hook"] = ["hang"]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.unit.notify.crash_child",
        receiver.url, str(store_path), json.dumps(event),
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        await asyncio.wait_for(receiver.arrived.wait(), 20)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert json.loads(store_path.read_text())["evt-1@webhook"]["state"] == "pending"

    outcomes: list[OutcomeRecord] = []
    ledger = DeliveryLedger(JsonFileStore(store_path))
    config = parse_config(crash_config(receiver.url), {})
    async with Dispatcher(config, registry=CollectorRegistry(), ledger=ledger,
                          on_outcome=outcomes.append) as dispatcher:
        assert await dispatcher.submit(event) == []  # the uncommitted input is replayed
        await dispatcher.drain()

    assert [o.outcome for o in outcomes] == ["delivered"]
    assert receiver.answered == [("/hook", 200)]  # exactly one accepted delivery
    assert {r.headers["Idempotency-Key"] for r in receiver.at("/hook")} == {"evt-1"}
    assert json.loads(store_path.read_text())["evt-1@webhook"]["state"] == "delivered"

"""A worker process for the crash test: submits one event and waits for delivery.

Run as ``python -m tests.unit.notify.crash_child URL STORE EVENT_JSON``; the test
kills it with SIGKILL while the webhook request hangs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from agents.notify.config import parse_config
from agents.notify.delivery import Dispatcher
from agents.notify.ledger import DeliveryLedger
from tests.unit.notify.helpers import JsonFileStore


def crash_config(url: str) -> dict[str, object]:
    return {
        "channels": {"webhook": {"type": "webhook", "url": f"{url}/hook", "timeout_secs": 30}},
        "grouping": {"group_wait_secs": 0, "group_interval_secs": 0},
    }


async def main(url: str, store: Path, event: dict[str, object]) -> None:
    ledger = DeliveryLedger(JsonFileStore(store))
    config = parse_config(crash_config(url), {})
    async with Dispatcher(config, registry=CollectorRegistry(), ledger=ledger) as dispatcher:
        await dispatcher.submit(event)
        await dispatcher.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])))

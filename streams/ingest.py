"""Input agents: validate every input message, DLQ the bad ones, hand good ones to the worker's pipeline.

The first stage of the data path (``streams`` package docstring): the good events go to
``streams.host.host``; the bad ones to ``risk.dlq`` (``streams.dlq``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from streams import metrics
from streams.app import app
from streams.dlq import accept, quarantine
from streams.host import host
from streams.settings import get_settings
from streams.supervision import supervised
from streams.topics import contract_topic, market_ticks_topic, positions_topic, strategy_stats_topic

log = logging.getLogger(__name__)


async def _consume(stream: Any, *, feed_pipeline: bool, name: str) -> None:
    await host.ready.wait()  # recovery first replays what was consumed and loads the quarantine
    inject = get_settings().fault_inject == name
    async for event in stream.events():
        message = event.message
        topic = contract_topic(message.topic)
        if (topic, message.partition, message.offset) in host.quarantined:
            log.warning("skipping %s[%d]@%d: it failed %s before (quarantined on risk.dlq)",
                        message.topic, message.partition, message.offset, name)
            continue
        try:
            if inject:  # test-only (MEVRISK_FAULT_INJECT): a real agent crash, outside the isolation
                raise RuntimeError("injected fault")
            started = time.perf_counter()
            clean = await accept(event)
            if clean is not None and feed_pipeline:
                await host.offer(topic, clean, message.partition, offset=message.offset)
            metrics.PROCESSING_SECONDS.labels(topic).observe(time.perf_counter() - started)
        except Exception as error:  # a bug past the pipeline's isolation: quarantine, then crash
            await quarantine(event, name, error)
            raise


@app.agent(positions_topic)
@supervised("apply_positions")
async def apply_positions(stream: Any) -> None:
    """Positions, partitioned by portfolio: validated, then applied to this worker's books."""
    await _consume(stream, feed_pipeline=True, name="apply_positions")


@app.agent(strategy_stats_topic)
@supervised("apply_strategy_stats")
async def apply_strategy_stats(stream: Any) -> None:
    """Strategy interval statistics, partitioned by strategy."""
    await _consume(stream, feed_pipeline=True, name="apply_strategy_stats")


@app.agent(market_ticks_topic)
@supervised("screen_ticks")
async def screen_ticks(stream: Any) -> None:
    """Ticks are validated (and DLQ-ed) once per consumer group here; every worker receives all
    valid ticks through the replicated market feed (``streams.host``). Like the other input
    agents it starts once recovery has loaded the quarantine."""
    await _consume(stream, feed_pipeline=False, name="screen_ticks")


"""Input agents: validate every input message, DLQ the bad ones, hand good ones to the worker's pipeline."""

from __future__ import annotations

import time
from typing import Any

from streams import metrics
from streams.app import app
from streams.dlq import accept
from streams.host import host
from streams.topics import contract_topic, market_ticks_topic, positions_topic, strategy_stats_topic


async def _consume(stream: Any, *, feed_pipeline: bool) -> None:
    if feed_pipeline:
        await host.ready.wait()  # recovery first replays what was consumed before a restart
    async for event in stream.events():
        started = time.perf_counter()
        topic = contract_topic(event.message.topic)
        clean = await accept(event)
        if clean is not None and feed_pipeline:
            await host.offer(topic, clean, event.message.partition)
        metrics.PROCESSING_SECONDS.labels(topic).observe(time.perf_counter() - started)


@app.agent(positions_topic)
async def apply_positions(stream: Any) -> None:
    """Positions, partitioned by portfolio: validated, then applied to this worker's books."""
    await _consume(stream, feed_pipeline=True)


@app.agent(strategy_stats_topic)
async def apply_strategy_stats(stream: Any) -> None:
    """Strategy interval statistics, partitioned by strategy."""
    await _consume(stream, feed_pipeline=True)


@app.agent(market_ticks_topic)
async def screen_ticks(stream: Any) -> None:
    """Ticks are validated (and DLQ-ed) once per consumer group here; every worker receives all
    valid ticks through the replicated market feed (``streams.host``)."""
    await _consume(stream, feed_pipeline=False)

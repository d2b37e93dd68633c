"""The idle heartbeat never moves the clock past the wall clock (issue 11: one record stamped
ahead must not make every later input late)."""

from __future__ import annotations

from agents.assembly import PipelineOptions, build_pipeline
from streams.heartbeat import heartbeat_target_ms

WALL_MS = 1_767_225_600_000
SKEW_MS = 299_000  # admitted: MEVRISK_MAX_FUTURE_SKEW_MS is 300 s


def _tick(ts_ms: int, price: float = 2_000.0) -> dict:
    return {"ts_ms": ts_ms, "source": "price-oracle", "kind": "price", "chain": "ethereum",
            "asset": "ETH", "price_usd": price}


def test_replayed_history_advances_from_its_newest_event() -> None:
    assert heartbeat_target_ms(WALL_MS - 3_600_000, WALL_MS, 5_000) == WALL_MS - 3_595_000


def test_a_record_stamped_ahead_does_not_move_the_clock_past_the_wall_clock() -> None:
    pipeline = build_pipeline(PipelineOptions(bar_ms=1000, allowed_lateness_ms=50))
    pipeline.offer("mev.market.ticks", _tick(WALL_MS - 10_000), 1)
    pipeline.offer("mev.market.ticks", _tick(WALL_MS + SKEW_MS), 0)  # one bot's clock is ahead
    pipeline.heartbeat(heartbeat_target_ms(WALL_MS + SKEW_MS, WALL_MS, 5_000))  # then all is quiet
    assert pipeline.watermark_ms <= WALL_MS + 5_000
    pipeline.offer("mev.market.ticks", _tick(WALL_MS + 6_000), 1)  # the next honest tick
    assert pipeline.stats.late == 0

"""Rejected inputs in the pipeline's DLQ rate: timed by their record key, so the Kafka path (records
read per partition, partitions interleaved) and the offline replay (file order) count them alike."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

import orjson

from agents.assembly import PipelineOptions, build_pipeline
from agents.pipeline import RiskPipeline
from agents.replay import replay
from agents.state import partitions_of, restore, take
from schemas.contracts import ContractError, validate_bytes
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)
SECRET = b"test-secret-of-32-bytes-or-more!!"

Line = tuple[str, bytes, str]


def _lines() -> list[Line]:
    sim = Simulator(5, START_MS, 100, 75, [Incident.parse("bad-messages@40s")])
    return [(ev.topic, ev.value if isinstance(ev.value, bytes) else orjson.dumps(ev.value), ev.key)
            for ev in sim]


PARTITIONS = 4


def _partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


def _feed(pipeline: RiskPipeline, lines: Iterator[Line] | list[Line]) -> list[dict]:
    """What the worker does: validate, offer the good (from their partition), count the bad by
    key; returns the alert events."""
    out = []
    for topic, raw, key in lines:
        try:
            value = validate_bytes(topic, raw)
        except ContractError as error:
            out.extend(pipeline.reject(topic, key, error.reason))
            continue
        out.extend(pipeline.offer(topic, value, _partition(key)))
    out.extend(pipeline.drain())
    return [v for t, _, v in out if t == "risk.alerts"]


def _by_partition(lines: list[Line], rng: random.Random) -> Iterator[Line]:
    """Each topic partition keeps its order, as in Kafka; partitions are read at different speeds
    (a bounded skew, well within the allowed lateness)."""
    queues: dict[tuple[str, int], list[Line]] = {}
    for line in lines:
        queues.setdefault((line[0], _partition(line[2])), []).append(line)
    while any(queues.values()):
        queue = rng.choice([q for q in queues.values() if q])
        for _ in range(rng.randint(1, 20)):
            if queue:
                yield queue.pop(0)


def _burst(alerts: list[dict]) -> list[tuple[str, int]]:
    return [(a["transition"], a["ts_ms"]) for a in alerts if a["rule"] == "InputRejectionBurst"]


def test_bad_messages_fire_the_burst_rule_on_both_paths_at_the_same_time() -> None:
    lines = _lines()
    assert sum(1 for line in lines if _rejected(line)) >= 3
    offline = _burst(replay(lines, OPTIONS).of("risk.alerts"))
    assert offline and offline[0][0] == "firing"
    assert START_MS + 40_000 <= offline[0][1] <= START_MS + 45_000
    pipeline = build_pipeline(OPTIONS)
    shuffled = list(_by_partition(lines, random.Random(4)))
    assert shuffled != lines
    assert _burst(_feed(pipeline, shuffled)) == offline
    assert pipeline.stats.late == 0


def _rejected(line: Line) -> bool:
    try:
        validate_bytes(line[0], line[1])
    except ContractError:
        return True
    return False


def test_a_reject_counts_at_its_keys_latest_time_and_the_key_times_survive_a_checkpoint() -> None:
    pipeline = build_pipeline(OPTIONS)
    tick = {"kind": "price", "source": "price-oracle", "ts_ms": START_MS + 5_000, "asset": "BTC",
            "price_usd": 60000.0}
    pipeline.offer("mev.market.ticks", tick)
    pipeline.offer("mev.market.ticks", {**tick, "asset": "ETH", "ts_ms": START_MS + 9_000})
    assert pipeline.watermark_ms == START_MS + 7_000  # 9 s less the allowed lateness
    assert pipeline.reject_time("mev.market.ticks", "BTC") == START_MS + 5_000
    assert pipeline.reject_time("mev.market.ticks", "nope") == START_MS + 9_000  # unknown key: latest
    assert pipeline.reject_time("mev.positions", "alpha") == START_MS + 9_000
    pipeline.reject("mev.market.ticks", "ETH", "malformed_json")  # at 9 s: waits in the heap
    assert [e[0] for e in pipeline._heap if e[3] == "rejected"] == [START_MS + 9_000]
    restored = build_pipeline(OPTIONS)
    restore(restored, take(pipeline, partitions_of(pipeline), secret=SECRET), secret=SECRET)
    assert restored._key_ts == pipeline._key_ts
    assert sorted(restored._heap, key=lambda e: e[:3]) == sorted(pipeline._heap, key=lambda e: e[:3])
    restored.reject("mev.market.ticks", "ETH", "malformed_json")  # ties with the restored one: no error
    assert sum(1 for e in restored._heap if e[3] == "rejected") == 2

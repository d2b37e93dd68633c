"""The pure pipeline: same input set, same outputs, whatever the interleaving of its sources."""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson
import pytest

from agents.alerts.rules import DEFAULT_RULES_PATH, parse_rules, read_rules_document
from agents.assembly import PipelineOptions, build_pipeline
from agents.audit.chain import verify_chains
from agents.pipeline import RiskPipeline, operator_actions
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

START_MS = 1_767_225_600_000
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)


def _events(seed: int = 3, duration_s: float = 60) -> list[tuple[str, dict]]:
    sim = Simulator(seed, START_MS, 150, duration_s, [Incident.parse("flash-crash@30s/10s")])
    return [(ev.topic, ev.value) for ev in sim if isinstance(ev.value, dict)]


def _run(pipeline: RiskPipeline, events: list[tuple[str, dict]]) -> list[tuple[str, str, dict]]:
    out = []
    for topic, value in events:
        out.extend(pipeline.offer(topic, value))
    out.extend(pipeline.drain())
    return out


def _interleave(events: list[tuple[str, dict]], rng: random.Random, max_skew: int) -> Iterator:
    """Each topic keeps its own order, but topics are read at different speeds (bounded skew)."""
    queues = {t: [e for e in events if e[0] == t] for t in sorted({t for t, _ in events})}
    while any(queues.values()):
        topic = rng.choice([t for t, q in queues.items() if q])
        for _ in range(rng.randint(1, max_skew)):
            if queues[topic]:
                yield queues[topic].pop(0)


@pytest.fixture(scope="module")
def events() -> list[tuple[str, dict]]:
    return _events()


def test_same_input_twice_gives_identical_outputs(events) -> None:
    first = _run(build_pipeline(OPTIONS), events)
    second = _run(build_pipeline(OPTIONS), events)
    assert first == second
    topics = {t for t, _, _ in first}
    assert {"risk.snapshots", "risk.alerts", "risk.audit"} <= topics


def test_interleaving_of_sources_does_not_change_alerts(events) -> None:
    reference = [v for t, _, v in _run(build_pipeline(OPTIONS), events) if t == "risk.alerts"]
    assert reference, "the flash crash raises alerts"
    reordered = list(_interleave(events, random.Random(9), max_skew=40))
    assert reordered != events
    pipeline = build_pipeline(OPTIONS)
    got = [v for t, _, v in _run(pipeline, reordered) if t == "risk.alerts"]
    assert pipeline.stats.late == 0
    assert [a["event_id"] for a in got] == [a["event_id"] for a in reference]


def test_nothing_is_released_before_the_market_is_seen(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    positions = [(t, v) for t, v in events if t == "mev.positions"][:200]
    outputs = [o for t, v in positions for o in pipeline.offer(t, v)]
    assert outputs == [] and pipeline.watermark_ms == 0
    tick = next(v for t, v in events if t == "mev.market.ticks" and v["ts_ms"] > positions[-1][1]["ts_ms"])
    pipeline.offer("mev.market.ticks", tick)
    slowest = min(tick["ts_ms"], positions[-1][1]["ts_ms"])
    assert pipeline.watermark_ms == slowest - OPTIONS.allowed_lateness_ms, "the slowest source rules"


def test_a_late_event_is_applied_and_counted_not_dropped(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    _run(pipeline, events[:3000])
    opened = next(v for t, v in events if t == "mev.positions" and v["action"] == "open")
    late = {**opened, "position_id": "late-1", "ts_ms": START_MS}
    pipeline.offer("mev.positions", late)
    assert pipeline.stats.late == 1
    assert pipeline.risk.snapshot(late["portfolio"], pipeline.watermark_ms)["active_positions"] >= 1


def test_idle_partition_stops_holding_the_watermark(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    pipeline.idle_source_secs = 5.0
    pipeline.expect("mev.positions", 3, wall_s=0.0)  # a partition that never delivers
    ticks = [(t, v) for t, v in events if t == "mev.market.ticks"][:500]
    for i, (topic, value) in enumerate(ticks[:250]):
        pipeline.offer(topic, value, partition=0, wall_s=1.0 + i * 0.001)
    assert pipeline.watermark_ms == 0, "the silent partition holds the watermark while not idle"
    for i, (topic, value) in enumerate(ticks[250:]):
        pipeline.offer(topic, value, partition=0, wall_s=10.0 + i * 0.001)
    assert pipeline.watermark_ms == ticks[-1][1]["ts_ms"] - OPTIONS.allowed_lateness_ms


def test_a_partition_read_to_its_end_stops_holding_the_watermark_soon(events) -> None:
    """A silent partition whose reader is at its end holds the clock ``head_idle_secs``, not
    ``idle_source_secs``: nothing older can come from it."""
    pipeline = build_pipeline(OPTIONS)
    pipeline.idle_source_secs, pipeline.head_idle_secs = 5.0, 0.05
    positions = [(t, v) for t, v in events if t == "mev.positions"][:1]
    ticks = [(t, v) for t, v in events if t == "mev.market.ticks" and v["ts_ms"] > positions[0][1]["ts_ms"]]
    pipeline.offer(*positions[0], partition=2, wall_s=0.0)
    for i, (topic, value) in enumerate(ticks[:100]):
        pipeline.offer(topic, value, partition=0, wall_s=0.01 + i * 0.0001)
    held = positions[0][1]["ts_ms"] - OPTIONS.allowed_lateness_ms
    assert pipeline.watermark_ms <= held, "a partition with records left to read holds the clock"
    pipeline.poll(1.0)
    assert pipeline.watermark_ms <= held, "...for idle_source_secs, not less"
    pipeline.at_head("mev.positions", 2, True)
    pipeline.poll(1.0)  # 1 s silent (> head_idle_secs) and at its end: no longer holds
    assert pipeline.watermark_ms == ticks[99][1]["ts_ms"] - OPTIONS.allowed_lateness_ms
    pipeline.at_head("mev.positions", 2, False)
    pipeline.offer(*ticks[100], partition=0, wall_s=1.0)
    assert pipeline.watermark_ms == ticks[99][1]["ts_ms"] - OPTIONS.allowed_lateness_ms, (
        "records to read again: it holds the clock again (the clock never goes back)")


def test_a_tick_partition_the_feed_knows_is_behind_never_counts_as_idle(events) -> None:
    """A worker whose event loop stalled (say after a restore) must not let the first tick
    partition it reads move the clock past another whose records the feed has not read yet
    (``at_head(..., exact=True)`` with the position below the end offset)."""
    pipeline = build_pipeline(OPTIONS)
    pipeline.idle_source_secs = 5.0
    ticks = [(t, v) for t, v in events if t == "mev.market.ticks"][:600]
    for i, (topic, value) in enumerate(ticks[:200]):
        pipeline.offer(topic, value, partition=i % 2, wall_s=0.0)
    held = pipeline.watermark_ms
    pipeline.at_head("mev.market.ticks", 1, False, exact=True)  # partition 1 has records left
    for topic, value in ticks[200:]:
        pipeline.offer(topic, value, partition=0, wall_s=8.0)  # 8 s later, only partition 0 speaks
    newest_1 = max(v["ts_ms"] for _, v in ticks[:200][1::2])
    assert pipeline.watermark_ms <= max(held, newest_1 - OPTIONS.allowed_lateness_ms), (
        "partition 1 is behind its end: it holds the clock however long it was silent")
    pipeline.at_head("mev.market.ticks", 1, True, exact=True)  # read to its end, and silent: idle
    pipeline.poll(8.5)  # partition 0 spoke 0.5 s ago, partition 1 8.5 s ago
    assert pipeline.watermark_ms == ticks[-1][1]["ts_ms"] - OPTIONS.allowed_lateness_ms
    assert pipeline.stats.late == 0


def test_every_reader_at_its_end_releases_up_to_the_newest_event(events) -> None:
    pipeline = build_pipeline(OPTIONS)
    pipeline.head_idle_secs = 0.05
    ticks = [(t, v) for t, v in events if t == "mev.market.ticks"][:400]
    for i, (topic, value) in enumerate(ticks):
        pipeline.offer(topic, value, partition=i % 2, wall_s=0.0)
    newest = max(v["ts_ms"] for _, v in ticks)
    assert pipeline.watermark_ms < newest - OPTIONS.allowed_lateness_ms
    pipeline.at_head("mev.market.ticks", 0, True)
    pipeline.at_head("mev.market.ticks", 1, True)
    pipeline.poll(0.1)
    assert pipeline.watermark_ms == newest - OPTIONS.allowed_lateness_ms


def test_a_price_tick_refreshes_the_portfolios_holding_the_asset_between_bars(events) -> None:
    """Between bars, a price tick re-marks the portfolios holding its asset at the next coalescing
    boundary (``coalesce_ms``); with ``refresh_on_price`` off only position changes and bar ends do."""
    options = PipelineOptions(bar_ms=60_000, allowed_lateness_ms=0, coalesce_ms=250)
    quiet_from = START_MS + 5_000  # positions stop changing here; prices go on
    feed = [(t, v) for t, v in events[:4000] if t != "mev.positions" or v["ts_ms"] < quiet_from]

    def between_bars(refresh: bool) -> list[dict]:
        pipeline = build_pipeline(options)
        pipeline.refresh_on_price = refresh
        # wall time = event time: the silent positions partition stops holding the clock when idle
        out = [o for t, v in feed for o in pipeline.offer(t, v, 0, (v["ts_ms"] - START_MS) / 1000)]
        return [v for t, _, v in out if t == "risk.snapshots" and v["ts_ms"] > quiet_from + 250]

    off = between_bars(False)
    assert off == [], "no position changed: no snapshot between bars"
    on = between_bars(True)
    assert on and all(s["ts_ms"] % 250 == 0 for s in on), "one per coalescing boundary"
    pipeline = build_pipeline(options)
    for topic, value in feed:
        pipeline.offer(topic, value, 0, (value["ts_ms"] - START_MS) / 1000)
    holders = set().union(*(pipeline.risk.holders(a) for a in pipeline.risk.assets.names))
    assert {s["portfolio"] for s in on} == holders
    for portfolio in holders:  # every boundary once, as the prices of its assets tick throughout
        stamps = [s["ts_ms"] for s in on if s["portfolio"] == portfolio]
        assert len(stamps) == len(set(stamps)) and len(stamps) > 50


def test_operator_actions_replay_from_the_audit_trail(events) -> None:
    """A replay that re-applies the audited operator actions reproduces the live outputs exactly."""
    live = build_pipeline(OPTIONS)
    outputs: list[tuple[str, str, dict]] = []
    cut = len(events) * 3 // 4
    for topic, value in events[:cut]:
        outputs.extend(live.offer(topic, value))
    firing = [a for a in live.alerts.alerts() if a.status == "firing"]
    assert firing, "the flash crash has fired an alert by now"
    outputs.extend(live.acknowledge(firing[0].id, "oncall-1", "looking"))
    _, silence_out = live.add_silence({"alertname": "NoSuchRule"}, live.watermark_ms,
                                      live.watermark_ms + 60_000, "oncall-1", "test")
    outputs.extend(silence_out)
    outputs.extend(live.command("strategy:jit-univ3", "HALT", "oncall-1", "manual"))
    document = read_rules_document(DEFAULT_RULES_PATH)  # the acknowledged alert's rule is dropped
    document["rules"] = [r for r in document["rules"] if r["name"] != firing[0].rule]
    reloaded = live.reload_rules(parse_rules(document, "edited.yaml"), "admin-1", document)
    assert any(v.get("resolved_by") == "reload" for t, _, v in reloaded if t == "risk.alerts")
    outputs.extend(reloaded)
    for topic, value in events[cut:]:
        outputs.extend(live.offer(topic, value))
    outputs.extend(live.drain())

    audit = [v for t, _, v in outputs if t == "risk.audit"]
    kinds = ["acknowledge", "silence_add", "command", "rules_reload"]
    assert [a["kind"] for a in operator_actions(audit)] == kinds
    replayed = build_pipeline(OPTIONS)
    for action in operator_actions(audit):
        replayed.schedule_operator(action)
    again = _run(replayed, events)
    assert [v for t, _, v in again if t == "risk.audit"] == audit
    assert [v for t, _, v in again if t == "risk.alerts"] == [v for t, _, v in outputs if t == "risk.alerts"]
    # read back from an offset on (recovery after a state restore): ordered by their offsets
    offsets = [1_000 + 3 * i for i in range(len(audit))]
    tail = operator_actions(audit[2:], orders=offsets[2:])
    assert [a["audit_order"] for a in tail] == [offsets[i] for i in range(2, len(audit))
                                                 if operator_actions([audit[i]])]
    assert [a["kind"] for a in tail] == [a["kind"] for a in operator_actions(audit)
                                         if a["audit_order"] >= 2]


def _partitioned(events: list[tuple[str, dict]]) -> Iterator[tuple[str, dict, int]]:
    """Portfolio alpha and its strategies on partition 0, everything else on partition 1."""
    for topic, value in events:
        if topic == "mev.positions":
            yield topic, value, 0 if value["portfolio"] == "alpha" else 1
        elif topic == "mev.strategy.stats":
            yield topic, value, 0 if value["strategy"] < "j" else 1
        else:
            yield topic, value, 0


def _run_owned(events: list[tuple[str, dict]], owned: frozenset[int] | None, leader: bool) -> list:
    pipeline = build_pipeline(OPTIONS)
    pipeline.owned_partitions, pipeline.leader = owned, leader
    out = []
    for topic, value, partition in _partitioned(events):
        out.extend(pipeline.offer(topic, value, partition))
    return out + pipeline.drain()


def test_a_worker_publishes_only_for_the_partitions_it_owns() -> None:
    """Two workers splitting the partitions publish, together, exactly what one worker publishes."""
    incidents = ("flash-crash@30s/10s", "feed-stall@50s/30s", "revert-storm@20s/60s")
    sim = Simulator(3, START_MS, 150, 120, [Incident.parse(x) for x in incidents])
    events = [(ev.topic, ev.value) for ev in sim if isinstance(ev.value, dict)]
    alone = _run_owned(events, None, leader=True)
    first = _run_owned(events, frozenset({0}), leader=True)
    second = _run_owned(events, frozenset({1}), leader=False)
    portfolios = {name: {v["portfolio"] for t, _, v in out if t == "risk.snapshots"}
                  for name, out in (("first", first), ("second", second))}
    assert portfolios == {"first": {"alpha"}, "second": {"beta"}}
    scopes = [{(v["scope"], v["entity_id"]) for t, _, v in out if t == "risk.alerts"}
              for out in (first, second)]
    assert not scopes[0] & scopes[1], "no alert is raised by both workers"
    assert {"portfolio", "strategy", "source"} <= {s for s, _ in scopes[0]}
    assert {s for s, _ in scopes[0]} <= {"portfolio", "strategy", "source", "asset", "global"}
    assert {s for s, _ in scopes[1]} == {"portfolio", "strategy"}, "only the leader speaks for the feed"

    def key(item: tuple) -> bytes:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)

    assert sorted(map(key, first + second)) == sorted(map(key, alone))
    # each audit chain is written by one worker and is the same whoever writes it
    chains = [{v["stream"] for t, _, v in out if t == "risk.audit"} for out in (first, second)]
    assert chains == [{"risk", "risk-p0"}, {"risk-p1"}]
    records = [v for t, _, v in first + second if t == "risk.audit"]
    assert all(ok for ok, _, _ in verify_chains(records).values())


def test_market_ahead_names_who_holds_the_watermark_back() -> None:
    """The market feed may wait (backpressure) only when the ticks are not the slowest active
    source: then the positions, or their idleness, release what is buffered."""
    pipeline = build_pipeline(OPTIONS)
    events = _events(duration_s=20)
    ticks = [v for t, v in events if t == "mev.market.ticks"]
    positions = [v for t, v in events if t == "mev.positions"]
    for value in ticks:  # the ticks read ahead, positions not yet
        pipeline.offer("mev.market.ticks", value, 0, 100.0)
    pipeline.offer("mev.positions", positions[0], 0, 100.0)
    assert ticks[-1]["ts_ms"] > positions[0]["ts_ms"]
    assert pipeline.buffered > 0
    assert pipeline.market_ahead(100.0)
    # the positions partition falls idle: the ticks alone hold the clock, never wait for it
    assert not pipeline.market_ahead(100.0 + pipeline.idle_source_secs + 1)
    for value in positions[1:]:  # the positions catch up past the ticks
        pipeline.offer("mev.positions", value | {"ts_ms": ticks[-1]["ts_ms"] + 1}, 0, 100.0)
    assert not pipeline.market_ahead(100.0)


def test_buffered_counts_what_waits_for_the_watermark() -> None:
    pipeline = build_pipeline(OPTIONS)
    assert pipeline.buffered == 0
    out = _run(pipeline, _events(duration_s=10))
    assert out and pipeline.buffered == 0


def test_a_record_stamped_ahead_of_its_arrival_holds_its_partition_only_up_to_the_arrival(events) -> None:
    """A partition's progress counts a record's event time at most up to the wall clock it was read
    at: one record stamped ahead (inside the admitted future skew) must not stop its partition
    holding the clock, or the partition's next, honestly stamped records arrive late."""
    ticks = [v for t, v in events if t == "mev.market.ticks"][:800]
    position = next(v for t, v in events if t == "mev.positions" and v["ts_ms"] > ticks[99]["ts_ms"])
    ahead = {**position, "position_id": "ahead-1", "ts_ms": ticks[99]["ts_ms"] + 30_000}
    honest = {**position, "ts_ms": ticks[100]["ts_ms"]}
    assert ticks[-1]["ts_ms"] - OPTIONS.allowed_lateness_ms > honest["ts_ms"]
    late = {}
    for arrival in (None, ticks[99]["ts_ms"]):
        pipeline = build_pipeline(OPTIONS)
        for tick in ticks[:100]:
            pipeline.offer("mev.market.ticks", tick, 0, wall_s=0.0, arrival_ms=tick["ts_ms"])
        pipeline.offer("mev.positions", ahead, 1, wall_s=0.0, arrival_ms=arrival)
        for tick in ticks[100:]:  # the ticks are read faster than the positions
            pipeline.offer("mev.market.ticks", tick, 0, wall_s=0.5, arrival_ms=tick["ts_ms"])
        pipeline.offer("mev.positions", honest, 1, wall_s=0.5, arrival_ms=ticks[-1]["ts_ms"])
        late[arrival is not None] = pipeline.stats.late
    assert late == {False: 1, True: 0}, "held up to its arrival, the partition's next record is not late"


def test_the_clock_a_quiet_pipeline_rests_at_does_not_depend_on_which_partition_fell_silent_first(
        events) -> None:
    """Input ends, every partition falls silent: the clock comes to rest at the newest event less
    the lateness, whichever partition was silent first (a restarted worker replaying the same
    input must not go further than the first one did, test_notify_crash)."""
    ticks = [v for t, v in events if t == "mev.market.ticks"][:400]
    stats = [v for t, v in events if t == "mev.strategy.stats" and v["ts_ms"] < ticks[200]["ts_ms"]]
    rest = {}
    for stats_first in (True, False):
        pipeline = build_pipeline(OPTIONS)
        pipeline.idle_source_secs = 3.0
        feeds = [("mev.strategy.stats", stats, 1), ("mev.market.ticks", ticks, 0)]
        for n, (topic, values, partition) in enumerate(feeds if stats_first else feeds[::-1]):
            for value in values:
                pipeline.offer(topic, value, partition, wall_s=float(n))
        for wall_s in (2.0, 3.5, 4.5, 10.0):  # the one read first falls silent first
            pipeline.poll(wall_s)
        rest[stats_first] = pipeline.watermark_ms
    assert rest[True] == rest[False] == ticks[-1]["ts_ms"] - OPTIONS.allowed_lateness_ms

"""The simulator: determinism, ordering, wire contract, and every incident visible."""

from __future__ import annotations

import statistics
from collections import Counter

import orjson
import pytest

from streams.sim import BAD_KINDS, Event, Incident, Simulator, SimulatorError
from tests.unit.sim.contract import check

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
INCIDENTS = [
    "flash-crash@10s/5s",
    "gas-spike@20s/10s",
    "feed-stall@35s/10s",
    "revert-storm@50s/10s",
    "concentration-build-up@65s/10s",
    "stablecoin-depeg@80s/15s",
    "bad-messages@100s/4s",
]


def at(s: float) -> int:
    return T0 + int(s * 1000)


@pytest.fixture(scope="module")
def run() -> list[Event]:
    incidents = [Incident.parse(s) for s in INCIDENTS]
    return list(Simulator(seed=42, start_ms=T0, rate_eps=150, duration_s=110, incidents=incidents))


def dicts(events: list[Event], topic: str, **match: object) -> list[dict]:
    return [e.value for e in events if e.topic == topic and isinstance(e.value, dict)
            and all(e.value.get(k) == v for k, v in match.items())]


def last_before(series: list[dict], field: str, t_ms: int) -> float:
    return [v[field] for v in series if v["ts_ms"] < t_ms][-1]


def test_same_seed_same_events_different_seed_differs() -> None:
    a = list(Simulator(seed=1, start_ms=T0, rate_eps=300, duration_s=10))
    b = list(Simulator(seed=1, start_ms=T0, rate_eps=300, duration_s=10))
    c = list(Simulator(seed=2, start_ms=T0, rate_eps=300, duration_s=10))
    assert a == b
    assert a != c
    assert len(a) > 1000
    sim = Simulator(seed=1, start_ms=T0, rate_eps=300, duration_s=1)
    list(sim)
    with pytest.raises(SimulatorError, match="already ran"):
        iter(sim)


def test_event_time_nondecreasing_and_within_run(run: list[Event]) -> None:
    ts = [e.ts_ms for e in run]
    assert ts == sorted(ts)
    assert ts[0] >= T0 and ts[-1] < at(110)
    assert all(e.value["ts_ms"] == e.ts_ms for e in run if isinstance(e.value, dict))


def test_rate_is_roughly_as_asked() -> None:
    n = sum(1 for _ in Simulator(seed=3, start_ms=T0, rate_eps=200, duration_s=30))
    assert 0.6 * 200 * 30 < n < 1.2 * 200 * 30


def test_every_dict_event_meets_the_wire_contract(run: list[Event]) -> None:
    bad = [(e.topic, e.key, err) for e in run if isinstance(e.value, dict)
           for err in check(e.topic, e.key, e.value)]
    assert bad == []


def test_the_world_is_rich_enough(run: list[Event]) -> None:
    prices = dicts(run, "mev.market.ticks", kind="price")
    assert len({v["asset"] for v in prices}) >= 6
    assert {v["chain"] for v in dicts(run, "mev.market.ticks", kind="gas")} >= {"ethereum", "arbitrum"}
    assert {v["source"] for v in dicts(run, "mev.market.ticks")} == {
        "price-oracle", "gas-tracker", "liquidity-monitor"}
    pos = dicts(run, "mev.positions")
    assert len({v["kind"] for v in pos}) >= 4
    assert len({v["portfolio"] for v in pos}) >= 2
    assert {v["action"] for v in pos} == {"open", "update", "close"}
    assert any("legs" in v for v in pos)
    assert len({v["strategy"] for v in dicts(run, "mev.strategy.stats")}) >= 4


def test_position_seq_strictly_increases_and_closed_positions_stay_closed(run: list[Event]) -> None:
    last: dict[str, dict] = {}
    for v in dicts(run, "mev.positions"):
        prev = last.get(v["position_id"])
        if prev is None:
            assert v["action"] == "open" and v["seq"] == 0
        else:
            assert prev["action"] != "close"
            assert v["seq"] == prev["seq"] + 1
        last[v["position_id"]] = v


def test_flash_crash_drops_eth_and_correlated_assets(run: list[Event]) -> None:
    for asset, limit in (("ETH", -0.15), ("WBTC", -0.08)):
        series = dicts(run, "mev.market.ticks", kind="price", asset=asset)
        before, after = last_before(series, "price_usd", at(10)), last_before(series, "price_usd", at(15.5))
        assert after / before - 1 <= limit, asset
    usdc = dicts(run, "mev.market.ticks", kind="price", asset="USDC")
    assert abs(last_before(usdc, "price_usd", at(15.5)) - 1.0) < 0.01


def test_gas_spike_multiplies_gas(run: list[Event]) -> None:
    gas = dicts(run, "mev.market.ticks", kind="gas", chain="ethereum")
    pre = statistics.median(v["base_fee_gwei"] for v in gas if at(0) <= v["ts_ms"] < at(20))
    spike = statistics.median(v["base_fee_gwei"] for v in gas if at(20) <= v["ts_ms"] < at(30))
    assert spike >= 4 * pre


def test_gas_and_volatility_hurt_inclusion_and_revert_more(run: list[Event]) -> None:
    def rates(lo: float, hi: float) -> tuple[float, float]:
        sel = [v for v in dicts(run, "mev.strategy.stats", chain="ethereum")
               if at(lo) < v["ts_ms"] <= at(hi)]
        sub = sum(v["bundles_submitted"] for v in sel)
        return (sum(v["bundles_included"] for v in sel) / sub,
                sum(v["bundles_reverted"] for v in sel) / sub)

    calm_incl, calm_rev = rates(0, 10)
    spike_incl, _ = rates(20, 30)
    _, crash_rev = rates(10, 20)
    _, storm_rev = rates(50, 60)
    assert spike_incl < 0.75 * calm_incl
    assert crash_rev > 1.5 * calm_rev
    assert storm_rev > 3 * calm_rev


def test_feed_stall_silences_its_source_only(run: list[Event]) -> None:
    window = [v for v in dicts(run, "mev.market.ticks") if at(35) <= v["ts_ms"] < at(45)]
    assert not [v for v in window if v["source"] == "price-oracle"]
    assert {v["source"] for v in window} == {"gas-tracker", "liquidity-monitor"}
    assert [v for v in dicts(run, "mev.market.ticks", source="price-oracle") if v["ts_ms"] >= at(45)]


def test_concentration_build_up_piles_into_one_asset(run: list[Event]) -> None:
    def alpha_exposure(t_ms: int) -> Counter[str]:
        book: dict[str, dict] = {}
        for v in dicts(run, "mev.positions", portfolio="alpha"):
            if v["ts_ms"] < t_ms:
                book[v["position_id"]] = v
        gross: Counter[str] = Counter()
        for v in book.values():
            if v["action"] != "close":
                for leg in v.get("legs", [v]):
                    gross[leg["asset"]] += abs(leg["notional_usd"])
        return gross

    before, after = alpha_exposure(at(65)), alpha_exposure(at(75))
    assert before["ETH"] < 0.6 * before.total()
    assert after["ETH"] > 0.85 * after.total()
    assert 15e6 < after["ETH"] < 25e6  # ramps to the 20 M USD target


def test_stablecoin_depeg(run: list[Event]) -> None:
    usdc = dicts(run, "mev.market.ticks", kind="price", asset="USDC")
    assert min(v["price_usd"] for v in usdc if at(80) <= v["ts_ms"] < at(95)) <= 0.97
    assert max(abs(v["price_usd"] - 1) for v in usdc if v["ts_ms"] < at(80)) < 0.01
    depth = dicts(run, "mev.market.ticks", kind="liquidity", asset="USDC")
    pre = statistics.median(v["depth_usd"] for v in depth if v["ts_ms"] < at(80))
    during = statistics.median(v["depth_usd"] for v in depth if at(80) <= v["ts_ms"] < at(95))
    assert during < 0.5 * pre


def _defects(raw: bytes) -> set[str]:
    found: set[str] = set()
    if len(raw) > 1_048_576:
        found.add("oversized")
    if b"NaN" in raw:
        found.add("nan")
    if b"Infinity" in raw:
        found.add("infinity")
    try:
        v = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not found & {"nan", "infinity"}:
            found.add("malformed-json")
        return found
    if v.get("kind") not in {"price", "gas", "liquidity", "arbitrage", "liquidation", "sandwich",
                             None, "frontrun", "backrun", "jit", "other"}:
        found.add("unknown-enum")
    if isinstance(v.get("price_usd"), int | float) and v["price_usd"] < 0:
        found.add("negative-price")
    if "strategy" in v and "interval_ms" in v and isinstance(v.get("bundles_submitted"), str):
        found.add("wrong-type")
    if v.get("action") == "open" and "position_id" not in v:
        found.add("missing-field")
    return found


def test_bad_messages_cover_every_kind(run: list[Event]) -> None:
    raw = [e for e in run if isinstance(e.value, bytes)]
    assert raw and all(at(100) <= e.ts_ms < at(104) for e in raw)
    kinds = Counter(k for e in raw for k in _defects(e.value))
    assert set(kinds) == set(BAD_KINDS)
    assert {e.topic for e in raw} == {"mev.market.ticks", "mev.positions", "mev.strategy.stats"}


def test_incident_specs_parse_and_reject() -> None:
    inc = Incident.parse("gas-spike@2m/30s", factor=10.0)
    assert (inc.at_s, inc.duration_s, inc.param("factor"), inc.param("chain")) == (
        120.0, 30.0, 10.0, "ethereum")
    for bad in ("meteor@10s", "flash-crash", "flash-crash@-1s", "flash-crash@10x"):
        with pytest.raises(SimulatorError):
            Incident.parse(bad)
    with pytest.raises(SimulatorError):
        Incident.parse("gas-spike@10s", colour="red")
    for params in ({"asset": "DOGE"}, {"drop": 1.5}):
        with pytest.raises(SimulatorError):
            crash = Incident.parse("flash-crash@1s", **params)
            Simulator(seed=1, start_ms=T0, rate_eps=10, incidents=[crash])
    with pytest.raises(SimulatorError):
        Simulator(seed=1, start_ms=T0, rate_eps=10, incidents=[Incident.parse("feed-stall@1s", source="x")])


def test_rotating_schedule_runs_endlessly_and_lazily() -> None:
    from itertools import islice

    from streams.sim import incident_schedule_every

    schedule = incident_schedule_every(5, ["gas-spike", "stablecoin-depeg", "bad-messages"])
    sim = Simulator(seed=5, start_ms=T0, rate_eps=100, duration_s=None, incidents=schedule)
    events, seen = [], set()
    for event in islice(sim, 3000):  # ~30 s of an endless run: incidents start at 5, 10, ... 25 s
        events.append(event)
        seen.update(i.name for i in sim.active)
    assert events[-1].ts_ms > at(20)
    assert seen == {"gas-spike", "stablecoin-depeg", "bad-messages"}, seen  # the rotation went round
    assert any(isinstance(e.value, bytes) for e in events)

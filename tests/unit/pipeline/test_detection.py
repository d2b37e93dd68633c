"""Time to detect every simulator incident with the shipped rules, and silence without incidents.

Each run is the offline path of ``mevrisk replay --offline``: the simulator's events (bad ones
included, as raw bytes) go through :func:`agents.replay.replay` with the shipped configuration
(``deploy/config``: rules.yaml, watch.yaml, risk.yaml) at 1 s bars. An incident is detected at
the event time of the first ``firing`` event of one of its detector rules (on the incident's
asset, source or portfolio where it has one) at or after its onset. Budget: 5 s of event time;
feed-stall: the feed's staleness limit + 2 s.

``pytest -s tests/unit/pipeline/test_detection.py`` prints the time-to-detect table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from agents.assembly import PipelineOptions
from agents.pipeline import DEFAULT_SOURCE_LIMITS_MS
from agents.replay import ReplayResult, replay
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RATE_EPS = 100
OPTIONS = PipelineOptions(bar_ms=1000, allowed_lateness_ms=2000)
BUDGET_MS = 5_000

DETECTORS: dict[str, tuple[str, ...]] = {
    "flash-crash": ("PriceJump", "LiquidityDrop", "TickAnomalyBurst"),
    "gas-spike": ("GasSpike",),
    "revert-storm": ("StrategyRevertStorm",),
    "stablecoin-depeg": ("StablecoinDepeg",),
    "concentration-build-up": ("ConcentrationBuildUp",),
    "feed-stall": ("StaleFeed",),
    "bad-messages": ("InputRejectionBurst",),
}
"""Incident -> the shipped rules that detect it."""

ENTITY_PARAM = {"stablecoin-depeg": "asset", "concentration-build-up": "portfolio",
                "feed-stall": "source"}
"""Incidents whose detecting alert must name the incident's own asset, portfolio or feed."""

SCHEDULES: dict[int, tuple[Incident, ...]] = {
    3: (Incident.make("flash-crash", 90), Incident.make("gas-spike", 130),
        Incident.make("revert-storm", 170), Incident.make("stablecoin-depeg", 210),
        Incident.make("concentration-build-up", 250), Incident.make("feed-stall", 290),
        Incident.make("bad-messages", 330)),
    11: (Incident.make("bad-messages", 90),
         Incident.make("stablecoin-depeg", 130, asset="DAI", price_usd=0.97),
         Incident.make("feed-stall", 170), Incident.make("concentration-build-up", 210),
         Incident.make("revert-storm", 260), Incident.make("gas-spike", 300, factor=10.0),
         Incident.make("flash-crash", 340, asset="WBTC", drop=0.15)),
    29: (Incident.make("gas-spike", 90, duration_s=40.0), Incident.make("flash-crash", 140, drop=0.12),
         Incident.make("revert-storm", 200, duration_s=70.0), Incident.make("feed-stall", 280),
         Incident.make("stablecoin-depeg", 310, asset="USDT"),
         Incident.make("concentration-build-up", 350, portfolio="beta", asset="WBTC"),
         Incident.make("bad-messages", 390)),
}
"""Seed -> incident schedule (orders, targets and sizes differ; 90 s of warm-up first). A revert
storm needs a minute after a flash crash: the crash's volatility raises reverts too, and the
strategies' StrategyRevertStorm alerts are still firing 35 s after it (no new ``firing`` then)."""


def _lines(sim: Simulator) -> Iterator[tuple[str, bytes, str]]:
    for ev in sim:
        raw = ev.value if isinstance(ev.value, bytes) else orjson.dumps(ev.value)
        yield ev.topic, raw, ev.key


def run(seed: int, incidents: tuple[Incident, ...], duration_s: float) -> ReplayResult:
    """The offline pipeline over one simulator run."""
    return replay(_lines(Simulator(seed, T0, RATE_EPS, duration_s, incidents)), OPTIONS)


def budget_ms(incident: Incident) -> int:
    if incident.name == "feed-stall":
        return DEFAULT_SOURCE_LIMITS_MS[incident.param("source")] + 2_000
    return BUDGET_MS


def time_to_detect(alerts: list[dict[str, Any]], incident: Incident) -> tuple[int, str] | None:
    """(ms from onset, rule) of the first detecting alert within a minute of the onset."""
    onset = T0 + int(incident.at_s * 1000)
    param = ENTITY_PARAM.get(incident.name)
    for a in alerts:  # in event-time order
        if (a["transition"] == "firing" and a["rule"] in DETECTORS[incident.name]
                and onset <= a["ts_ms"] <= onset + 60_000
                and (param is None or a["entity_id"] == incident.param(param))):
            return a["ts_ms"] - onset, a["rule"]
    return None


@pytest.mark.parametrize("seed", sorted(SCHEDULES))
def test_every_incident_is_detected_within_budget(seed: int) -> None:
    schedule = SCHEDULES[seed]
    result = run(seed, schedule, max(i.end_s for i in schedule) + 10)
    alerts = sorted(result.of("risk.alerts"), key=lambda a: a["ts_ms"])
    rows, late = [], []
    for incident in schedule:
        found = time_to_detect(alerts, incident)
        shown = "not detected" if found is None else f"{found[0] / 1000:5.1f} s  by {found[1]}"
        rows.append(f"seed {seed:3d}  {incident.name:24s} @{incident.at_s:5.0f}s  {shown}")
        if found is None or found[0] > budget_ms(incident):
            late.append(incident.name)
    print("\ntime to detect (event time, budget 5 s; feed-stall: limit + 2 s)\n" + "\n".join(rows))
    assert not late, f"seed {seed}: detected late or not at all: {late}"


def test_no_alert_and_no_control_without_incidents() -> None:
    result = run(5, (), 300)
    alerts = [(a["rule"], a["entity_id"], a["ts_ms"] - T0) for a in result.of("risk.alerts")]
    print(f"\nincident-free 300 s: {len(alerts)} alert events, {len(result.of('risk.controls'))} controls")
    assert alerts == []
    assert result.of("risk.controls") == []

"""The simulator's injected incidents, detected by the tick detector (issue 6; ``pytest -s`` prints).

The real :class:`~streams.sim.Simulator` runs on a fixed seed for 20 event-minutes at a
modest rate, with an incident every ``PERIOD_S`` seconds after the warm-up, rotating over:

* ``flash-crash`` (simulator incident): one asset falls 10-25 % over 5 s, vol x4, depth x0.4;
* ``gas-spike`` (simulator incident): one chain's reported fees x4-10 for 20 s;
* ``outlier-tick``: the simulator has no bad-but-valid tick incident, so the test rewrites
  one price tick of an asset to ``price x (1 +- 2-40 %)`` (log-uniform size, still a valid
  tick); the next ticks of that asset are the simulator's own again.

Every tick goes through :class:`~agents.anomaly.ticks.TickAnomalyDetector` with its default
parameters. An incident is detected when at least one warm, flagged tick of the affected
asset (price or liquidity) or chain (gas) falls in ``[start, end + GRACE_MS]``. Normal ticks
are the warm ticks of any key outside every incident window widened by ``GRACE_MS`` on both
sides; the false-positive rate is flagged normal ticks / normal ticks. The simulator's own
background gas spikes and price jumps are part of "normal" and count against the detector,
and so do the after-effects of an incident that outlast the grace (e.g. spreads stay wide
while the simulator's volatility gauge decays after a crash).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.anomaly.ticks import TickAnomalyDetector, TickScore
from streams.sim import Incident, Simulator, default_config
from streams.sim.events import TICKS

SEED = 42
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
RATE_EPS = 60
DURATION_S = 1200
FIRST_AT_S = 120  # every key has passed the detector's 100-tick warm-up by then
PERIOD_S = 45
GRACE_MS = 5_000
KINDS = ("flash-crash", "gas-spike", "outlier-tick")


@dataclass
class Window:
    """Where and when one incident shows: ticks whose ``field`` equals ``name``, ``kinds`` only."""

    kind: str
    field: str  # "asset" | "chain"
    name: str
    kinds: tuple[str, ...]
    start_ms: int
    end_ms: int | None = None  # an outlier's is known once its tick has been rewritten

    def affects(self, tick: dict[str, Any]) -> bool:
        assert self.end_ms is not None
        return (
            tick["kind"] in self.kinds
            and tick.get(self.field) == self.name
            and self.start_ms <= tick["ts_ms"] <= self.end_ms + GRACE_MS
        )

    def near(self, ts_ms: int) -> bool:
        assert self.end_ms is not None
        return self.start_ms - GRACE_MS <= ts_ms <= self.end_ms + GRACE_MS


@dataclass
class Outlier:
    """A bad-but-valid price print: the first ``asset`` price tick at or after ``window.start_ms``."""

    window: Window
    factor: float


@dataclass
class Plan:
    incidents: list[Incident] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)


def _plan(seed: int = SEED) -> Plan:
    """The incident schedule, its magnitudes and targets drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    cfg = default_config()
    crashable = [a.symbol for a in cfg.assets if not a.stable]
    assets = [a.symbol for a in cfg.assets]
    chains = [c.name for c in cfg.chains]
    plan = Plan()
    for n, at_s in enumerate(range(FIRST_AT_S, DURATION_S - PERIOD_S + 1, PERIOD_S)):
        kind, start_ms = KINDS[n % len(KINDS)], T0 + at_s * 1000
        if kind == "flash-crash":
            asset = str(rng.choice(crashable))
            inc = Incident.make(kind, at_s, asset=asset, drop=float(rng.uniform(0.10, 0.25)))
            window = Window(kind, "asset", asset, ("price", "liquidity"), start_ms)
        elif kind == "gas-spike":
            chain = str(rng.choice(chains))
            inc = Incident.make(kind, at_s, chain=chain, factor=float(rng.uniform(4.0, 10.0)))
            window = Window(kind, "chain", chain, ("gas",), start_ms)
        else:
            asset = str(rng.choice(assets))
            size = float(np.exp(rng.uniform(np.log(0.02), np.log(0.40)))) * float(rng.choice([-1.0, 1.0]))
            window = Window(kind, "asset", asset, ("price",), start_ms)
            plan.outliers.append(Outlier(window, 1.0 + size))
            plan.windows.append(window)
            continue
        window.end_ms = T0 + int(inc.end_s * 1000)
        plan.incidents.append(inc)
        plan.windows.append(window)
    return plan


def _ticks(plan: Plan) -> Iterator[dict[str, Any]]:
    """The simulator's tick values, with the plan's outlier prints rewritten in place."""
    sim = Simulator(
        seed=SEED, start_ms=T0, rate_eps=RATE_EPS, duration_s=DURATION_S, incidents=plan.incidents
    )
    pending = list(plan.outliers)
    for ev in sim:
        if ev.topic != TICKS or not isinstance(ev.value, dict):
            continue
        tick = ev.value
        for out in pending:
            w = out.window
            if tick["kind"] == "price" and tick["asset"] == w.name and tick["ts_ms"] >= w.start_ms:
                tick = {**tick, "price_usd": round(tick["price_usd"] * out.factor, 6)}
                w.start_ms = w.end_ms = tick["ts_ms"]
                pending.remove(out)
                break
        yield tick


@dataclass
class Figures:
    hits: Counter[str]
    totals: Counter[str]
    normal: Counter[str]  # warm normal ticks per tick kind
    false_pos: Counter[str]
    weakest: dict[str, float]  # per incident kind: the lowest of the incidents' peak scores
    n_ticks: int

    def recall(self, kind: str | None = None) -> float:
        if kind is None:
            return sum(self.hits.values()) / sum(self.totals.values())
        return self.hits[kind] / self.totals[kind]

    def fpr(self, tick_kind: str | None = None) -> float:
        if tick_kind is None:
            return sum(self.false_pos.values()) / sum(self.normal.values())
        return self.false_pos[tick_kind] / self.normal[tick_kind]


def _measure(detector: TickAnomalyDetector, plan: Plan) -> Figures:
    scored: list[tuple[dict[str, Any], TickScore]] = [(t, detector.process_one(t)) for t in _ticks(plan)]
    assert all(w.end_ms is not None for w in plan.windows), "an outlier found no tick to rewrite"
    detected: set[int] = set()
    peak = [0.0] * len(plan.windows)
    normal: Counter[str] = Counter()
    false_pos: Counter[str] = Counter()
    for tick, result in scored:
        if not result.is_warm:
            continue
        hit = [i for i, w in enumerate(plan.windows) if w.affects(tick)]
        for i in hit:
            peak[i] = max(peak[i], result.score)
        if result.is_anomaly:
            detected.update(hit)
        if not any(w.near(tick["ts_ms"]) for w in plan.windows):
            normal[tick["kind"]] += 1
            false_pos[tick["kind"]] += result.is_anomaly
    totals = Counter(w.kind for w in plan.windows)
    hits = Counter(plan.windows[i].kind for i in detected)
    weakest = {k: min(p for p, w in zip(peak, plan.windows, strict=True) if w.kind == k) for k in totals}
    return Figures(hits, totals, normal, false_pos, weakest, len(scored))


def test_simulator_incidents_detected_with_recall_and_low_false_positive_rate() -> None:
    plan = _plan()
    figures = _measure(TickAnomalyDetector(seed=SEED), plan)
    per_kind = " ".join(
        f"{k}={figures.hits[k]}/{figures.totals[k]} "
        f"(recall {figures.recall(k):.2f}, weakest peak score {figures.weakest[k]:.2f})"
        for k in KINDS
    )
    fpr_by_tick = " ".join(f"{k}={figures.fpr(k):.4f}" for k in sorted(figures.normal))
    print(
        f"\nsimulator seed={SEED} {DURATION_S}s @ {RATE_EPS} ev/s, ticks={figures.n_ticks}, "
        f"incidents={sum(figures.totals.values())}: recall={figures.recall():.3f} [{per_kind}] "
        f"fpr={figures.fpr():.4f} over {sum(figures.normal.values())} normal ticks [{fpr_by_tick}]"
    )
    for kind in KINDS:
        assert figures.totals[kind] >= 8, kind
        assert figures.recall(kind) >= 0.8, kind
    assert figures.fpr() <= 0.05

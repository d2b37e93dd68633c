"""Per-portfolio figures of a day, folded one snapshot at a time in event-time order.

The folds (``SeriesFold``, ``BreachFold``, ``BacktestFold``, ``StressFold``, gathered by
``PortfolioDay``) hold O(1) state per figure (the backtest: at most ``history`` flags), so the
worker can keep a day per portfolio in memory (``agents.reports.archive``) and the report built
from the topics is the same computation. Conventions: USD amounts; VaR and ES are positive losses
(README, Risk conventions); a figure that a snapshot lacks or publishes as ``null`` is skipped,
never read as 0.

>>> snaps = [{"ts_ms": 1, "var_95_usd": 5.0}, {"ts_ms": 2, "var_95_usd": 12.0},
...          {"ts_ms": 3, "var_95_usd": None}, {"ts_ms": 4, "var_95_usd": 3.0}]
>>> s = series_stats(snaps, "var_95_usd")
>>> (s["start"], s["end"], s["min"], s["max"], s["max_ts_ms"], s["n"])
(5.0, 3.0, 3.0, 12.0, 2, 3)
>>> [(b["start_ts_ms"], b["end_ts_ms"], b["peak"]) for b in breaches(snaps, Limit("v", "var_95_usd", 10.0))]
[(2, 4, 12.0)]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.risk.backtest import evaluate, traffic_light

Snapshot = Mapping[str, Any]

SERIES_METRICS = ("total_exposure_usd", "net_exposure_usd", "var_95_usd", "var_99_usd",
                  "es_95_usd", "es_99_usd")
"""The figures given with start, end, min and max of the day."""
CHART_METRICS = ("total_exposure_usd", "var_95_usd", "var_99_usd", "es_95_usd", "es_99_usd")
COUNTERS = ("late_ticks", "positions_stale", "positions_duplicate")
"""Cumulative counters every snapshot carries (``agents.risk.engine``)."""


@dataclass(frozen=True)
class Limit:
    """An upper limit on one snapshot figure: breached while ``snapshot[metric] > max_value``."""

    name: str
    metric: str
    max_value: float


DEFAULT_LIMITS = (
    Limit("var_95_usd", "var_95_usd", 10_000.0),           # rule HighVaR95
    Limit("max_concentration", "max_concentration", 0.5),  # rule HighConcentration
    Limit("var_95_to_exposure", "var_to_exposure", 0.10),  # rule VaR95AboveTenPctOfExposure
)
"""The limits of the shipped rules (``deploy/config/rules.yaml``), without their ``for`` delays."""


def value_of(snapshot: Snapshot, metric: str) -> float | None:
    """A finite number of a snapshot, or None."""
    value = snapshot.get(metric)
    kind = type(value)
    if kind is float:  # the common case first: this runs ~15 times per snapshot in the worker
        return value if math.isfinite(value) else None  # type: ignore[arg-type]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)  # subclasses (numpy floats)
    return None


class SeriesFold:
    """Start, end, min and max (first time reached) of one figure."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.low: tuple[float, int] | None = None
        self.high: tuple[float, int] | None = None
        self.n = 0

    def add(self, ts_ms: int, value: float | None) -> None:
        if value is None:
            return
        if self.start is None:
            self.start = value
        self.end = value
        self.n += 1
        if self.low is None or value < self.low[0]:
            self.low = (value, ts_ms)
        if self.high is None or value > self.high[0]:
            self.high = (value, ts_ms)

    def result(self) -> dict[str, Any]:
        low, high = self.low or (None, None), self.high or (None, None)
        return {"start": self.start, "end": self.end, "min": low[0], "max": high[0],
                "min_ts_ms": low[1], "max_ts_ms": high[1], "n": self.n}


class BreachFold:
    """Every stretch of consecutive snapshots over a limit: start (first snapshot over), end (first
    snapshot back under, or the last one seen, with ``open``), peak and its time."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.closed: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.last_ts: int | None = None

    def add(self, ts_ms: int, value: float | None) -> None:
        if value is None:
            return
        self.last_ts = ts_ms
        cur = self.current
        if value > self.limit.max_value:
            if cur is None:
                self.current = {"limit": self.limit.name, "metric": self.limit.metric,
                                "max_value": self.limit.max_value, "start_ts_ms": ts_ms, "end_ts_ms": None,
                                "peak": value, "peak_ts_ms": ts_ms, "open": True}
            elif value > cur["peak"]:
                cur["peak"], cur["peak_ts_ms"] = value, ts_ms
        elif cur is not None:
            cur.update(end_ts_ms=ts_ms, open=False, duration_s=(ts_ms - cur["start_ts_ms"]) / 1000)
            self.closed.append(cur)
            self.current = None

    def result(self) -> list[dict[str, Any]]:
        out = list(self.closed)
        if self.current is not None and self.last_ts is not None:
            start = self.current["start_ts_ms"]
            duration_s = (self.last_ts - start) / 1000
            out.append({**self.current, "end_ts_ms": self.last_ts, "duration_s": duration_s})
        return out


class BacktestFold:
    """The day's VaR exception flags rebuilt from the engine's cumulative ``backtest`` blocks.

    Between two snapshots, one more observation with ``d`` more exceptions is one bar judged
    (``d`` = 1: an exception). Once the engine's series is full (``history`` flags), each bar
    snapshot (``ts_ms`` a multiple of ``bar_ms``) adds one flag and drops the oldest: +1 is an
    exception, -1 is not, 0 repeats the dropped flag, known only if that flag was itself rebuilt
    today; otherwise, and for any other jump (a restart), the bar counts as unknown."""

    def __init__(self, bar_ms: int, history: int = 1_000) -> None:
        self.bar_ms, self.history = bar_ms, history
        self.judged: deque[bool | None] = deque(maxlen=history)
        self.flags: list[bool] = []
        self.unknown = 0
        self.prev: tuple[int, int] | None = None
        self.last_block: dict[str, Any] | None = None

    def add(self, snapshot: Snapshot) -> None:
        block = snapshot.get("backtest")
        try:
            cur = (int(block["observations"]), int(block["exceptions"]))  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            return
        self.last_block = dict(block)  # type: ignore[arg-type]
        prev, self.prev = self.prev, cur
        if prev is None:
            return
        d_obs, d_exc = cur[0] - prev[0], cur[1] - prev[1]
        hit: bool | None
        if d_obs == 1 and d_exc in (0, 1):
            hit = d_exc == 1
        elif d_obs == 0 and cur[0] >= self.history and int(snapshot["ts_ms"]) % self.bar_ms == 0:
            dropped = self.judged[0] if len(self.judged) == self.history else None
            hit = {1: True, -1: False}.get(d_exc, dropped if d_exc == 0 else None)
        elif d_obs or d_exc:
            hit = None
        else:
            return  # no bar judged between these two snapshots
        self.judged.append(hit)
        if hit is None:
            self.unknown += 1
        else:
            self.flags.append(hit)

    def result(self) -> dict[str, Any]:
        """The engine's own backtest at the end of the day (zone over its last 250 bars) and the
        statistics of the day's series (``agents.risk.backtest.evaluate``)."""
        engine = self.last_block
        confidence = float(engine["confidence"]) if engine and "confidence" in engine else 0.99
        zone = str(engine["zone"]) if engine and "zone" in engine else None
        if engine and zone is None and "zone_exceptions" in engine:
            zone = traffic_light(int(engine["zone_exceptions"]))
        day = evaluate(self.flags, confidence).as_dict() if self.flags else None
        return {"zone": zone, "end_of_day": engine, "day": day, "day_unknown_bars": self.unknown}


class StressFold:
    """The worst stress result of the day (lowest scenario P&L in any snapshot) and the last
    result of every scenario."""

    def __init__(self) -> None:
        self.worst: dict[str, Any] | None = None
        self.last: dict[str, float | None] = {}

    def add(self, snapshot: Snapshot) -> None:
        stress = snapshot.get("stress")
        if not isinstance(stress, Mapping) or not stress:
            return
        self.last = {}
        for name, result in stress.items():
            pnl = value_of(result, "pnl_usd") if isinstance(result, Mapping) else None
            self.last[str(name)] = pnl
            if pnl is not None and (self.worst is None or pnl < self.worst["pnl_usd"]):
                self.worst = {"scenario": str(name), "pnl_usd": pnl, "ts_ms": int(snapshot["ts_ms"]),
                              "share_of_exposure": value_of(result, "share_of_exposure"),
                              "worst_position": result.get("worst_position")}

    def result(self) -> dict[str, Any] | None:
        return None if self.worst is None else {"worst": self.worst, "end_of_day": dict(self.last)}


class PortfolioDay:
    """Every figure of one portfolio's day: feed its snapshots in event-time order."""

    def __init__(self, limits: Sequence[Limit] = DEFAULT_LIMITS, bar_ms: int = 60_000,
                 history: int = 1_000, chart_points: int = 400) -> None:
        self.limits = tuple(limits)
        self.series = {m: SeriesFold() for m in SERIES_METRICS}
        self.limit_series = {lim.name: SeriesFold() for lim in self.limits}
        self.breaches = {lim.name: BreachFold(lim) for lim in self.limits}
        self.backtest = BacktestFold(bar_ms, history)
        self.stress = StressFold()
        self.counters: dict[str, list[int]] = {}  # name -> [first, last]
        self.chart_points = chart_points
        self.chart_step_ms = bar_ms  # doubles whenever the chart holds 2 x chart_points points
        self.chart: dict[str, list[Any]] = {"ts_ms": [], **{m: [] for m in CHART_METRICS}}
        self.snapshots = 0
        self.first_ts_ms: int | None = None
        self.last_ts_ms: int | None = None
        self._last_chart: Snapshot | None = None

    def add(self, s: Snapshot) -> None:
        ts = int(s["ts_ms"])
        self.snapshots += 1
        self.first_ts_ms = ts if self.first_ts_ms is None else self.first_ts_ms
        self.last_ts_ms = ts
        for metric, fold in self.series.items():
            fold.add(ts, value_of(s, metric))
        for lim in self.limits:
            value = value_of(s, lim.metric)
            self.limit_series[lim.name].add(ts, value)
            self.breaches[lim.name].add(ts, value)
        self.backtest.add(s)
        self.stress.add(s)
        for key in COUNTERS:
            if isinstance(s.get(key), int):
                self.counters.setdefault(key, [s[key], s[key]])[1] = s[key]
        chart_ts = self.chart["ts_ms"]
        if not chart_ts or ts - chart_ts[-1] >= self.chart_step_ms:
            self._chart_point(ts, s)
            self._last_chart = None
        else:
            self._last_chart = s

    def _chart_point(self, ts: int, s: Snapshot) -> None:
        self.chart["ts_ms"].append(ts)
        for m in CHART_METRICS:
            self.chart[m].append(value_of(s, m))
        if len(self.chart["ts_ms"]) >= 2 * self.chart_points:  # thin: every other point, twice the step
            for key, values in self.chart.items():
                self.chart[key] = values[::2]
            self.chart_step_ms *= 2

    def counter_growth(self) -> dict[str, int]:
        """Growth of each cumulative counter from the first to the last snapshot of the day."""
        return {k: last - first for k, (first, last) in self.counters.items()}

    def result(self) -> dict[str, Any]:
        chart = {k: list(v) for k, v in self.chart.items()}
        if self._last_chart is not None:  # the day's last snapshot closes the chart
            chart["ts_ms"].append(int(self._last_chart["ts_ms"]))
            for m in CHART_METRICS:
                chart[m].append(value_of(self._last_chart, m))
        limits = []
        for lim in self.limits:
            stats, found = self.limit_series[lim.name].result(), self.breaches[lim.name].result()
            limits.append({
                "limit": lim.name, "metric": lim.metric, "max_value": lim.max_value,
                "peak": stats["max"], "peak_utilisation": _ratio(stats["max"], lim.max_value),
                "end": stats["end"], "end_utilisation": _ratio(stats["end"], lim.max_value),
                "breach_count": len(found), "breaches": found,
            })
        return {"snapshots": self.snapshots, "first_ts_ms": self.first_ts_ms, "last_ts_ms": self.last_ts_ms,
                "figures": {m: f.result() for m, f in self.series.items()}, "limits": limits,
                "backtest": self.backtest.result(), "stress": self.stress.result(), "chart": chart}


def _ratio(value: float | None, limit: float) -> float | None:
    return None if value is None or limit == 0 else value / limit


def series_stats(snapshots: Sequence[Snapshot], metric: str) -> dict[str, Any]:
    """``start``, ``end``, ``min``, ``max`` (with their times) and ``n`` of one figure."""
    fold = SeriesFold()
    for s in snapshots:
        fold.add(int(s["ts_ms"]), value_of(s, metric))
    return fold.result()


def breaches(snapshots: Sequence[Snapshot], limit: Limit) -> list[dict[str, Any]]:
    """The breaches of one limit over a run of snapshots (see ``BreachFold``)."""
    fold = BreachFold(limit)
    for s in snapshots:
        fold.add(int(s["ts_ms"]), value_of(s, limit.metric))
    return fold.result()


def day_exceptions(snapshots: Sequence[Snapshot], bar_ms: int,
                   history: int = 1_000) -> tuple[list[bool], int]:
    """``(flags, unknown)`` of a run of snapshots (see ``BacktestFold``).

    >>> bt = lambda o, x: {"observations": o, "exceptions": x}
    >>> snaps = [{"ts_ms": t, "backtest": bt(o, x)} for t, o, x in
    ...          [(0, 3, 0), (500, 3, 0), (1000, 4, 1), (2000, 5, 1), (3000, 9, 2)]]
    >>> day_exceptions(snaps, bar_ms=1000)
    ([True, False], 1)
    """
    fold = BacktestFold(bar_ms, history)
    for s in snapshots:
        fold.add(s)
    return fold.flags, fold.unknown

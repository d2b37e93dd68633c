"""Per-portfolio figures of a day, from its snapshots in event-time order.

Conventions: USD amounts; VaR and ES are positive losses (README, Risk conventions); a figure
that a snapshot lacks or publishes as ``null`` is skipped, never read as 0.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.risk.backtest import evaluate, traffic_light

Snapshot = Mapping[str, Any]

SERIES_METRICS = ("total_exposure_usd", "net_exposure_usd", "var_95_usd", "var_99_usd",
                  "es_95_usd", "es_99_usd")
"""The figures given with start, end, min and max of the day."""


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
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def series_stats(snapshots: Sequence[Snapshot], metric: str) -> dict[str, Any]:
    """``start``, ``end``, ``min``, ``max`` (with their times) and ``n`` of one figure."""
    points = [(int(s["ts_ms"]), v) for s in snapshots if (v := value_of(s, metric)) is not None]
    if not points:
        return {"start": None, "end": None, "min": None, "max": None, "min_ts_ms": None,
                "max_ts_ms": None, "n": 0}
    low = min(points, key=lambda p: p[1])
    high = max(points, key=lambda p: p[1])
    return {"start": points[0][1], "end": points[-1][1], "min": low[1], "max": high[1],
            "min_ts_ms": low[0], "max_ts_ms": high[0], "n": len(points)}


def breaches(snapshots: Sequence[Snapshot], limit: Limit) -> list[dict[str, Any]]:
    """Every stretch of consecutive snapshots over the limit: start (first snapshot over), end
    (first snapshot back under, or the last one seen with ``open``), peak and its time."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last_ts: int | None = None
    for s in snapshots:
        value = value_of(s, limit.metric)
        if value is None:
            continue
        ts = int(s["ts_ms"])
        last_ts = ts
        if value > limit.max_value:
            if current is None:
                current = {"limit": limit.name, "metric": limit.metric, "max_value": limit.max_value,
                           "start_ts_ms": ts, "end_ts_ms": None, "peak": value, "peak_ts_ms": ts,
                           "open": True}
            elif value > current["peak"]:
                current["peak"], current["peak_ts_ms"] = value, ts
        elif current is not None:
            current["end_ts_ms"], current["open"] = ts, False
            out.append(current)
            current = None
    if current is not None:
        current["end_ts_ms"] = last_ts
        out.append(current)
    for b in out:
        b["duration_s"] = (b["end_ts_ms"] - b["start_ts_ms"]) / 1000
    return out


def limit_usage(snapshots: Sequence[Snapshot], limits: Sequence[Limit]) -> list[dict[str, Any]]:
    """Per limit: peak and end-of-day utilisation (figure / limit) and the breaches."""
    out = []
    for limit in limits:
        stats = series_stats(snapshots, limit.metric)
        found = breaches(snapshots, limit)
        out.append({
            "limit": limit.name, "metric": limit.metric, "max_value": limit.max_value,
            "peak": stats["max"], "peak_utilisation": _ratio(stats["max"], limit.max_value),
            "end": stats["end"], "end_utilisation": _ratio(stats["end"], limit.max_value),
            "breach_count": len(found), "breaches": found,
        })
    return out


def _ratio(value: float | None, limit: float) -> float | None:
    return None if value is None or limit == 0 else value / limit


def day_exceptions(snapshots: Sequence[Snapshot], bar_ms: int,
                   history: int = 1_000) -> tuple[list[bool], int]:
    """The day's VaR exception flags rebuilt from the engine's cumulative ``backtest`` blocks.

    Between two snapshots, one more observation with ``d`` more exceptions is one bar judged
    (``d`` = 1: an exception). Once the engine's series is full (``history`` flags), each bar
    snapshot (``ts_ms`` a multiple of ``bar_ms``) adds one flag and drops the oldest: +1 is an
    exception, -1 is not, 0 repeats the dropped flag, known only if that flag was itself rebuilt
    today; otherwise, and for any other jump (a restart), the bar counts as unknown.
    Returns ``(flags, unknown)``.

    >>> bt = lambda o, x: {"observations": o, "exceptions": x}
    >>> snaps = [{"ts_ms": t, "backtest": bt(o, x)} for t, o, x in
    ...          [(0, 3, 0), (500, 3, 0), (1000, 4, 1), (2000, 5, 1), (3000, 9, 2)]]
    >>> day_exceptions(snaps, bar_ms=1000)
    ([True, False], 1)
    """
    judged: list[bool | None] = []
    prev: tuple[int, int] | None = None
    for s in snapshots:
        block = s.get("backtest")
        try:
            cur = (int(block["observations"]), int(block["exceptions"]))  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            continue
        if prev is not None:
            d_obs, d_exc = cur[0] - prev[0], cur[1] - prev[1]
            if d_obs == 1 and d_exc in (0, 1):
                judged.append(d_exc == 1)
            elif d_obs == 0 and cur[0] >= history and int(s["ts_ms"]) % bar_ms == 0:
                dropped = judged[-history] if len(judged) >= history else None
                judged.append({1: True, -1: False}.get(d_exc, dropped if d_exc == 0 else None))
            elif d_obs or d_exc:
                judged.append(None)
        prev = cur
    flags = [h for h in judged if h is not None]
    return flags, len(judged) - len(flags)


def backtest_section(snapshots: Sequence[Snapshot], bar_ms: int,
                     history: int = 1_000) -> dict[str, Any]:
    """The engine's own backtest at the end of the day (zone over its last 250 bars) and the
    statistics of the day's rebuilt exception series (``agents.risk.backtest.evaluate``)."""
    engine = next((dict(s["backtest"]) for s in reversed(snapshots)
                   if isinstance(s.get("backtest"), Mapping)), None)
    flags, unknown = day_exceptions(snapshots, bar_ms, history)
    confidence = float(engine["confidence"]) if engine and "confidence" in engine else 0.99
    day = evaluate(flags, confidence).as_dict() if flags else None
    zone = str(engine["zone"]) if engine and "zone" in engine else None
    if engine and zone is None and "zone_exceptions" in engine:
        zone = traffic_light(int(engine["zone_exceptions"]))
    return {"zone": zone, "end_of_day": engine, "day": day, "day_unknown_bars": unknown}


def stress_section(snapshots: Sequence[Snapshot]) -> dict[str, Any] | None:
    """The worst stress result of the day (lowest scenario P&L in any snapshot) and the
    end-of-day result of every scenario."""
    worst: dict[str, Any] | None = None
    for s in snapshots:
        for name, result in (s.get("stress") or {}).items():
            pnl = value_of(result, "pnl_usd") if isinstance(result, Mapping) else None
            if pnl is not None and (worst is None or pnl < worst["pnl_usd"]):
                worst = {"scenario": name, "pnl_usd": pnl, "ts_ms": int(s["ts_ms"]),
                         "share_of_exposure": value_of(result, "share_of_exposure"),
                         "worst_position": result.get("worst_position")}
    if worst is None:
        return None
    last = next((s for s in reversed(snapshots) if s.get("stress")), {})
    end = {name: value_of(r, "pnl_usd") for name, r in (last.get("stress") or {}).items()
           if isinstance(r, Mapping)}
    return {"worst": worst, "end_of_day": end}

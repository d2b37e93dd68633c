"""The day archive a worker writes to ``risk.reports`` when a day closes in event time.

``DayArchive.observe`` sees every output the pipeline publishes (snapshots, alerts, controls,
audit, dead letters), folds each portfolio's snapshots into its day (``PortfolioDay``: O(1) per
figure, not the snapshots themselves) and keeps the day's alert events, controls and dead
letters. When an output's event time enters a later UTC day, every open day closes: one record
per portfolio, key ``date|portfolio``, value the daily report model of that portfolio (schema
``risk.report.daily``, ``source`` = ``archive``, without strategy P&L, which comes from the input
topic; the audit block gives each chain's head as the worker saw it, unverified: ``ok`` null).
A report for a day older than the snapshot topic's retention is built from these records.

A day is archived only if the archive saw it from its start: an output of an earlier day, or one
within the day's first two bars (a recovery that replays from before the day regenerates them).
Otherwise the day is skipped (``skipped``), so a worker restarted or rebuilt mid-day from inputs that
no longer reach back to the day's start never overwrites a complete day with a partial one.

>>> a = DayArchive()
>>> a.observe([("risk.snapshots", "p", {"portfolio": "p", "ts_ms": 1764547200000, "var_95_usd": 1.0})])
[]
>>> a.observe([("risk.snapshots", "p", {"portfolio": "p", "ts_ms": 1764633600000})])  # in the grace
[]
>>> [(t, k) for t, k, _ in a.observe([("risk.snapshots", "p", {"portfolio": "p", "ts_ms": 1764633720000})])]
[('risk.reports', '2025-12-01|p')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.reports.day import DAY_MS, day_bounds, day_of
from agents.reports.figures import PortfolioDay
from agents.reports.model import ReportOptions, model_from_days, strategy_homes

REPORTS_TOPIC = "risk.reports"
_KEPT = {"risk.alerts": "alerts", "risk.controls": "controls", "risk.dlq": "dlq"}


class _OpenDay:
    """What the archive holds of one day: each portfolio's fold and the day's other outputs."""

    def __init__(self, complete: bool) -> None:
        self.complete = complete
        self.days: dict[str, PortfolioDay] = {}
        self.homes: dict[str, str] = {}
        self.records: dict[str, list[Mapping[str, Any]]] = {k: [] for k in _KEPT.values()}
        self.heads: dict[str, Mapping[str, Any]] = {}
        self.audit_in_day: dict[str, int] = {}


class DayArchive:
    """Folds one worker's outputs by UTC day; emits ``(risk.reports, key, model)`` at day close.

    Outputs are not strictly in event-time order across portfolios (one bar close, or one jump over
    a quiet night, publishes each portfolio's outputs in turn), so a day closes only at the end of an
    ``observe`` call whose outputs reached ``grace_bars`` bars past the day's end."""

    def __init__(self, options: ReportOptions | None = None, grace_bars: int = 2) -> None:
        self.options = options or ReportOptions(source="archive")
        self.grace_ms = grace_bars * self.options.bar_ms
        self.open: dict[str, _OpenDay] = {}
        self.closed_until: str | None = None
        """The newest day closed: outputs of it or before are late."""
        self.first_day: str | None = None
        self.max_ts: int | None = None
        self.skipped = 0
        """Portfolio days not archived because they were not seen from their start."""
        self.late = 0
        """Outputs of a day already closed (not archived)."""
        self._names: dict[int, str] = {}

    def observe(self, outputs: Iterable[tuple[str, str, Mapping[str, Any]]]
                ) -> list[tuple[str, str, dict[str, Any]]]:
        """Fold ``outputs`` (one publishing batch); returns the archive records of the days it closed."""
        for topic, _, value in outputs:
            ts = value.get("received_ts_ms" if topic == "risk.dlq" else "ts_ms")
            if topic == REPORTS_TOPIC or not isinstance(ts, int) or isinstance(ts, bool):
                continue
            day = self._day_of(ts)
            if self.closed_until is not None and day <= self.closed_until:
                self.late += 1
                continue
            if day not in self.open:
                seen_before = self.first_day is not None and self.first_day < day
                self.open[day] = _OpenDay(seen_before or ts < day_bounds(day)[0] + 2 * self.options.bar_ms)
            self.first_day = day if self.first_day is None else min(self.first_day, day)
            self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
            self._fold(self.open[day], topic, value)
        out: list[tuple[str, str, dict[str, Any]]] = []
        for day in sorted(self.open):
            if self.max_ts is not None and self.max_ts >= day_bounds(day)[1] + self.grace_ms:
                out.extend(self.close(day))
        return out

    def _day_of(self, ts_ms: int) -> str:
        """``day_of`` with the day's name cached (this runs for every output the worker publishes)."""
        index = ts_ms // DAY_MS
        name = self._names.get(index)
        if name is None:
            if len(self._names) > 64:
                self._names.clear()
            name = self._names[index] = day_of(ts_ms)
        return name

    def _fold(self, held: _OpenDay, topic: str, value: Mapping[str, Any]) -> None:
        if topic == "risk.snapshots" and isinstance(value.get("portfolio"), str):
            name = value["portfolio"]
            if name not in held.days:
                held.days[name] = self.options.portfolio_day()
            held.days[name].add(value)
            held.homes.update(strategy_homes(value))
        elif topic == "risk.audit":
            stream = str(value.get("stream"))
            held.heads[stream] = {"seq": value.get("seq"), "hash": value.get("hash")}
            held.audit_in_day[stream] = held.audit_in_day.get(stream, 0) + 1
        elif topic in _KEPT:
            held.records[_KEPT[topic]].append(value)

    def close(self, day: str) -> list[tuple[str, str, dict[str, Any]]]:
        """Archive records of an open day (none if it was not seen from its start)."""
        held = self.open.pop(day)
        self.closed_until = day if self.closed_until is None else max(self.closed_until, day)
        if not held.complete:
            self.skipped += len(held.days)
            return []
        audit = {"ok": None, "records": sum(held.audit_in_day.values()), "chains": [
            {"stream": s, "ok": None, "first_bad_seq": None, "reason": "head as written, not verified",
             "records": held.audit_in_day[s], "head_seq": h["seq"], "head_hash": h["hash"],
             "records_in_day": held.audit_in_day[s]} for s, h in sorted(held.heads.items())]}
        out: list[tuple[str, str, dict[str, Any]]] = []
        for name in sorted(held.days):
            model = model_from_days(held.records, held.days, held.homes, day, name, self.options, audit)
            model["portfolio"], model["ts_ms"] = name, day_bounds(day)[1]
            out.append((REPORTS_TOPIC, f"{day}|{name}", model))
        return out


def merge_archived(models: Iterable[Mapping[str, Any]],
                   portfolio: str | None = None) -> dict[str, Any] | None:
    """One report model of a day from its archived per-portfolio models (all, or ``portfolio``'s; the
    last record of a key wins, as compaction keeps it); None when there is none. Firm-wide parts come
    from the first portfolio's."""
    latest = {str(m.get("portfolio")): m for m in models
              if portfolio is None or m.get("portfolio") == portfolio}
    chosen = [latest[k] for k in sorted(latest)]
    if not chosen:
        return None
    merged = {k: v for k, v in chosen[0].items() if k not in ("portfolio", "ts_ms")}
    merged["portfolios"] = [p for m in chosen for p in m.get("portfolios", [])
                            if portfolio is None or p.get("portfolio") == portfolio]
    merged["portfolio_filter"], merged["source"] = portfolio, "archive (risk.reports)"
    return merged

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
>>> [(t, k) for t, k, _ in a.observe([("risk.snapshots", "p", {"portfolio": "p", "ts_ms": 1764633600000})])]
[('risk.reports', '2025-12-01|p')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.reports.day import day_bounds, day_of
from agents.reports.figures import PortfolioDay
from agents.reports.model import ReportOptions, model_from_days, strategy_homes

REPORTS_TOPIC = "risk.reports"
_KEPT = {"risk.alerts": "alerts", "risk.controls": "controls", "risk.dlq": "dlq"}


class DayArchive:
    """Folds one worker's outputs by UTC day; emits ``(risk.reports, key, model)`` at day close."""

    def __init__(self, options: ReportOptions | None = None) -> None:
        self.options = options or ReportOptions(source="archive")
        self.day: str | None = None
        self.complete = False
        self.skipped = 0
        self.late = 0
        """Outputs of a day already closed (not archived)."""
        self._reset()

    def _reset(self) -> None:
        self.days: dict[str, PortfolioDay] = {}
        self.homes: dict[str, str] = {}
        self.records: dict[str, list[Mapping[str, Any]]] = {k: [] for k in _KEPT.values()}
        self.heads: dict[str, Mapping[str, Any]] = {}
        self.audit_in_day: dict[str, int] = {}

    def observe(self, outputs: Iterable[tuple[str, str, Mapping[str, Any]]]
                ) -> list[tuple[str, str, dict[str, Any]]]:
        """Fold ``outputs`` (in publishing order); returns the archive records of closed days."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        for topic, _, value in outputs:
            ts = value.get("received_ts_ms" if topic == "risk.dlq" else "ts_ms")
            if topic == REPORTS_TOPIC or not isinstance(ts, int) or isinstance(ts, bool):
                continue
            day = day_of(ts)
            if self.day is None:
                self.day = day
                self.complete = ts < day_bounds(day)[0] + 2 * self.options.bar_ms
            elif day > self.day:
                out.extend(self.close())
                self.day, self.complete = day, True
            elif day < self.day:
                self.late += 1
                continue
            self._fold(topic, value)
        return out

    def _fold(self, topic: str, value: Mapping[str, Any]) -> None:
        if topic == "risk.snapshots" and isinstance(value.get("portfolio"), str):
            name = value["portfolio"]
            if name not in self.days:
                self.days[name] = self.options.portfolio_day()
            self.days[name].add(value)
            self.homes.update(strategy_homes(value))
        elif topic == "risk.audit":
            stream = str(value.get("stream"))
            self.heads[stream] = {"seq": value.get("seq"), "hash": value.get("hash")}
            self.audit_in_day[stream] = self.audit_in_day.get(stream, 0) + 1
        elif topic in _KEPT:
            self.records[_KEPT[topic]].append(value)

    def close(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Archive records of the open day (none if it was not seen from its start); starts afresh."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        if self.day is not None and self.complete:
            audit = {"ok": None, "records": sum(self.audit_in_day.values()), "chains": [
                {"stream": s, "ok": None, "first_bad_seq": None, "reason": "head as written, not verified",
                 "records": self.audit_in_day[s], "head_seq": h["seq"], "head_hash": h["hash"],
                 "records_in_day": self.audit_in_day[s]} for s, h in sorted(self.heads.items())]}
            for name in sorted(self.days):
                model = model_from_days(self.records, self.days, self.homes, self.day, name, self.options,
                                        audit)
                model["portfolio"], model["ts_ms"] = name, day_bounds(self.day)[1]
                out.append((REPORTS_TOPIC, f"{self.day}|{name}", model))
        elif self.day is not None:
            self.skipped += len(self.days)
        self._reset()
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

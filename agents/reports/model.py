"""The daily report model: every section of one UTC day, per portfolio, from plain records.

``records`` maps a kind to a list of dicts as read from the topics: ``snapshots``
(``risk.snapshots``), ``alerts`` (``risk.alerts``), ``controls`` (``risk.controls``), ``audit``
(every record of ``risk.audit`` from its start: the chains are verified whole), ``dlq``
(``risk.dlq``), ``strategy_stats`` (``mev.strategy.stats``). Records outside the day (by event time
``ts_ms``; dead letters by ``received_ts_ms``) are ignored, so a reader may over-read. The model is
a JSON-friendly dict whose shape ``schemas/json/risk.report.daily.schema.json`` fixes; it holds no
wall-clock time, so the same records give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.reports.day import day_bounds
from agents.reports.errors import ReportError
from agents.reports.figures import DEFAULT_LIMITS, Limit, PortfolioDay
from agents.reports.lifecycle import controls_of, lifecycles, mttx, stale_minutes
from agents.reports.quality import audit_section, dead_letters, late_events
from agents.reports.strategies import strategy_rows

SCHEMA_ID = "mevrisk.report.daily/1"
RECORD_KINDS = ("snapshots", "alerts", "controls", "audit", "dlq", "strategy_stats")


@dataclass(frozen=True)
class ReportOptions:
    """Knobs of the report: limits, the engine's bar (ms of event time) and backtest history, the
    rules whose source alerts count as a stale feed, and where the records came from."""

    limits: tuple[Limit, ...] = DEFAULT_LIMITS
    bar_ms: int = 60_000
    backtest_history: int = 1_000
    stale_rules: tuple[str, ...] = ("StaleFeed",)
    source: str = "topics"
    chart_points: int = 400
    """Points per chart: between this and twice as many (thinned by halves as the day goes)."""

    def portfolio_day(self) -> PortfolioDay:
        """A fresh fold of one portfolio's day with these options."""
        return PortfolioDay(self.limits, self.bar_ms, self.backtest_history, self.chart_points)


def _in_day(rows: Sequence[Mapping[str, Any]], start_ms: int, end_ms: int) -> list[Mapping[str, Any]]:
    return [r for r in rows if isinstance(r, Mapping) and isinstance(r.get("ts_ms"), int)
            and start_ms <= r["ts_ms"] < end_ms]


def _owner(scope: Any, strategy_home: Mapping[str, str]) -> str | None:
    """The portfolio a control scope or alert entity belongs to (None: firm-wide)."""
    kind, _, name = str(scope).partition(":")
    if kind == "portfolio":
        return name
    if kind == "strategy":
        return strategy_home.get(name)
    return None


def build_model(records: Mapping[str, Sequence[Mapping[str, Any]]], date: str,
                portfolio: str | None = None, options: ReportOptions | None = None) -> dict[str, Any]:
    """The report model of ``date`` (UTC) for every portfolio seen that day, or only ``portfolio``."""
    options = options or ReportOptions()
    start_ms, end_ms = day_bounds(date)
    snapshots = sorted(_in_day(records.get("snapshots", ()), start_ms, end_ms), key=lambda s: s["ts_ms"])
    days: dict[str, PortfolioDay] = {}
    homes: dict[str, str] = {}
    for s in snapshots:
        if isinstance(s.get("portfolio"), str):
            if s["portfolio"] not in days:
                days[s["portfolio"]] = options.portfolio_day()
            days[s["portfolio"]].add(s)
            homes.update(strategy_homes(s))
    audit = audit_section(list(records.get("audit", ())), start_ms, end_ms)
    return model_from_days(records, days, homes, date, portfolio, options, audit)


def strategy_homes(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Strategy -> portfolio, from a snapshot's ``exposure_by_strategy``."""
    return {str(k): str(snapshot["portfolio"]) for k in snapshot.get("exposure_by_strategy") or {}}


def model_from_days(records: Mapping[str, Sequence[Mapping[str, Any]]], days: Mapping[str, PortfolioDay],
                    homes: Mapping[str, str], date: str, portfolio: str | None, options: ReportOptions,
                    audit: Mapping[str, Any]) -> dict[str, Any]:
    """The model from folded portfolio days and the day's other records (alerts, controls, dlq,
    strategy stats); ``homes`` maps strategies to portfolios (the stats' own field wins)."""
    start_ms, end_ms = day_bounds(date)
    stats = _in_day(records.get("strategy_stats", ()), start_ms, end_ms)
    strategy_home = dict(homes)
    strategy_home.update({str(s["strategy"]): str(s["portfolio"]) for s in stats
                          if isinstance(s.get("strategy"), str) and isinstance(s.get("portfolio"), str)})
    names = sorted(set(days) | set(strategy_home.values()))
    if portfolio is not None:
        if portfolio not in names:
            raise ReportError(f"no record of portfolio {portfolio!r} on {date} "
                              f"(seen: {', '.join(names) or 'none'})")
        names = [portfolio]
    alerts = lifecycles(records.get("alerts", ()), start_ms, end_ms)
    controls = controls_of(records.get("controls", ()), start_ms, end_ms)

    def alert_owner(a: Mapping[str, Any]) -> str | None:
        return _owner(f"{a['scope']}:{a['entity_id']}", strategy_home)

    folded = {name: days.get(name) or options.portfolio_day() for name in names}
    sections = []
    for name in names:
        mine = [a for a in alerts if alert_owner(a) == name]
        ctl = [c for c in controls if _owner(c["scope"], strategy_home) == name]
        own_stats = [s for s in stats if strategy_home.get(str(s.get("strategy"))) == name]
        rows = strategy_rows(own_stats, mine, ctl)
        sections.append(portfolio_section(name, folded[name].result(), mine, ctl, rows))
    firm_alerts = [a for a in alerts if alert_owner(a) is None]
    return {
        "schema": SCHEMA_ID, "date": date, "start_ms": start_ms, "end_ms": end_ms,
        "source": options.source, "portfolio_filter": portfolio,
        "portfolios": sections,
        "firm": {"alerts": firm_alerts, "mttx": mttx(firm_alerts),
                 "controls": [c for c in controls if _owner(c["scope"], strategy_home) is None]},
        "data_quality": {
            "dead_letters": dead_letters(records.get("dlq", ()), start_ms, end_ms),
            "stale_feed_minutes": stale_minutes(alerts, options.stale_rules, end_ms),
            "late_events": late_events(d.counter_growth() for d in folded.values()),
        },
        "audit": dict(audit),
    }


def portfolio_section(name: str, figures: Mapping[str, Any], alerts: list[dict[str, Any]],
                      controls: list[dict[str, Any]], strategies: list[dict[str, Any]]) -> dict[str, Any]:
    """One portfolio's section from its folded figures (``PortfolioDay.result``) and lists."""
    return {
        "portfolio": name,
        "snapshots": figures["snapshots"],
        "first_ts_ms": figures["first_ts_ms"],
        "last_ts_ms": figures["last_ts_ms"],
        "figures": figures["figures"],
        "limits": figures["limits"],
        "alerts": alerts,
        "mttx": mttx(alerts),
        "controls": controls,
        "backtest": figures["backtest"],
        "stress": figures["stress"],
        "strategies": strategies,
        "chart": figures["chart"],
    }

"""HTML rendering of the report model: one self-contained page (inline CSS, charts as ``data:``
URIs, no script, no external asset). Every string from the records is escaped.

>>> cell(None), cell("<b>"), usd(1234.5), secs(90.0)
('—', '&lt;b&gt;', '1,234.50', '1m 30s')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

CSS = """
@page { size: A4; margin: 14mm 12mm; @bottom-right { content: counter(page) " / " counter(pages);
  font-size: 8pt; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 9pt; color: #111; }
h1 { font-size: 16pt; margin: 0 0 4pt; } h2 { font-size: 13pt; margin: 14pt 0 4pt;
  border-bottom: 1px solid #999; } h3 { font-size: 10.5pt; margin: 10pt 0 3pt; }
table { border-collapse: collapse; margin: 2pt 0 6pt; width: 100%; }
th, td { border: 1px solid #bbb; padding: 1.5pt 3pt; text-align: left; vertical-align: top; }
th { background: #e8edf3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.hash { font-family: "DejaVu Sans Mono", monospace; font-size: 7pt; word-break: break-all; }
.ok { color: #176117; font-weight: bold; } .bad { color: #a31515; font-weight: bold; }
.zone-green { color: #176117; } .zone-yellow { color: #8a6d00; } .zone-red { color: #a31515; }
.break { page-break-before: always; } img.chart { width: 100%; }
.muted { color: #666; }
"""


def cell(value: Any) -> str:
    """A table cell's escaped text; None is a dash."""
    return "—" if value is None else escape(str(value))


def usd(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _num_cell(value: Any) -> str:
    """A number of a block as published (the engine's: untrusted), or a dash."""
    return num(value) if isinstance(value, int | float) and not isinstance(value, bool) else cell(None)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def secs(value: float | None) -> str:
    """Seconds as ``1h 2m 3s`` (rounded to the second)."""
    if value is None:
        return "—"
    s = round(value)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return " ".join(p for p in (f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s") if p)


def when(ts_ms: int | None) -> str:
    """UTC time of day of an event time."""
    if ts_ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%H:%M:%S")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; ``numeric`` columns align right."""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{body or '<tr><td colspan=99 class=muted>none</td></tr>'}</table>"


def _figures(p: Mapping[str, Any]) -> str:
    rows = [
        (
            escape(m),
            usd(f["start"]),
            usd(f["end"]),
            usd(f["min"]),
            when(f["min_ts_ms"]),
            usd(f["max"]),
            when(f["max_ts_ms"]),
        )
        for m, f in p["figures"].items()
    ]
    return table(["figure (USD)", "start", "end", "min", "at", "max", "at"], rows, (1, 2, 3, 5))


def _limits(p: Mapping[str, Any]) -> str:
    usage = table(
        ["limit", "max", "peak", "peak use", "end", "end use", "breaches"],
        [
            (
                cell(u["limit"]),
                num(u["max_value"], 6),
                num(u["peak"], 6),
                pct(u["peak_utilisation"]),
                num(u["end"], 6),
                pct(u["end_utilisation"]),
                str(u["breach_count"]),
            )
            for u in p["limits"]
        ],
        (1, 2, 3, 4, 5, 6),
    )
    every = [b for u in p["limits"] for b in u["breaches"]]
    rows = [
        (
            cell(b["limit"]),
            when(b["start_ts_ms"]),
            when(b["end_ts_ms"]) + (" (open)" if b["open"] else ""),
            secs(b["duration_s"]),
            num(b["peak"], 6),
            when(b["peak_ts_ms"]),
        )
        for b in every
    ]
    return (
        usage
        + "<h3>Breaches</h3>"
        + table(["limit", "from", "to", "lasted", "peak", "peak at"], rows, (3, 4))
    )


def alerts_table(alerts: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            when(a["fired_ts_ms"]),
            cell(a["rule"]),
            cell(a["severity"]),
            cell(a["entity_id"]),
            cell(a["message"]),
            when(a["acknowledged_ts_ms"]),
            cell(a["acknowledged_by"]),
            when(a["resolved_ts_ms"]),
            cell(
                a["resolved_by"]
                if a["resolved_by"] is not None
                else ("condition cleared" if a["resolved_ts_ms"] is not None else None)
            ),
            secs(a["tta_s"]),
            secs(a["ttr_s"]),
        )
        for a in alerts
    ]
    return table(
        [
            "fired",
            "rule",
            "severity",
            "entity",
            "message",
            "acked",
            "acked by",
            "resolved",
            "resolved by",
            "TTA",
            "TTR",
        ],
        rows,
        (9, 10),
    )


def mttx_tables(m: Mapping[str, Any]) -> str:
    def rows(group: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
        return [
            (
                cell(k),
                str(v["alerts"]),
                str(v["acknowledged"]),
                secs(v["mtta_s"]),
                str(v["resolved"]),
                secs(v["mttr_s"]),
            )
            for k, v in group.items()
        ]

    heads = ["alerts", "acknowledged", "MTTA", "resolved", "MTTR"]
    o = m["overall"]
    return (
        "<p>All alerts: "
        + escape(f"{o['alerts']} fired, MTTA {secs(o['mtta_s'])}, MTTR {secs(o['mttr_s'])}")
        + "</p>"
        + table(["severity", *heads], rows(m["by_severity"]), (1, 2, 3, 4, 5))
        + table(["rule", *heads], rows(m["by_rule"]), (1, 2, 3, 4, 5))
    )


def controls_table(controls: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["at", "scope", "command", "state", "actor", "reason"],
        [
            (
                when(c["ts_ms"]),
                cell(c["scope"]),
                cell(c["command"]),
                cell(c["state"]),
                cell(c["actor"]),
                cell(c["reason"]),
            )
            for c in controls
        ],
    )


def _backtest(b: Mapping[str, Any]) -> str:
    zone = str(b["zone"] or "none")
    out = (
        f'<p>Traffic-light zone at the end of the day: <b class="zone-{escape(zone)}">{escape(zone)}</b></p>'
    )
    rows = []
    for label, r in (("engine, end of day", b["end_of_day"]), ("this day's bars", b["day"])):
        if r:
            rows.append(
                (
                    label,
                    cell(r.get("observations")),
                    cell(r.get("exceptions")),
                    _num_cell(r.get("kupiec_lr")),
                    _num_cell(r.get("kupiec_pvalue")),
                    _num_cell(r.get("christoffersen_lr")),
                    _num_cell(r.get("christoffersen_pvalue")),
                    f"{cell(r.get('zone_exceptions'))} / {cell(r.get('zone_observations'))}",
                    cell(r.get("zone")),
                )
            )
    out += table(
        [
            "series",
            "bars",
            "exceptions",
            "Kupiec LR",
            "p",
            "Christoffersen LR",
            "p",
            "exceptions / last bars",
            "zone",
        ],
        rows,
        (1, 2, 3, 4, 5, 6),
    )
    if b["day_unknown_bars"]:
        unknown = b["day_unknown_bars"]
        out += f'<p class="muted">{unknown} bars of the day could not be judged from the snapshots.</p>'
    return out


def _stress(s: Mapping[str, Any] | None) -> str:
    if not s:
        return '<p class="muted">no stress result</p>'
    w = s["worst"]
    pos = w.get("worst_position") or {}
    out = (
        f"<p>Worst: <b>{cell(w['scenario'])}</b>, P&amp;L {usd(w['pnl_usd'])} USD "
        f"({pct(w['share_of_exposure'])} of exposure) at {when(w['ts_ms'])}; worst position "
        f"{cell(pos.get('position_id'))} ({usd(pos.get('pnl_usd'))} USD).</p>"
    )
    return out + table(
        ["scenario", "P&L at end of day, USD"], [(cell(k), usd(v)) for k, v in s["end_of_day"].items()], (1,)
    )


def _strategies(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        [
            "strategy",
            "net P&L",
            "gross P&L",
            "gas",
            "max drawdown",
            "inclusion",
            "reverts",
            "alerts",
            "state",
            "health",
        ],
        [
            (
                cell(r["strategy"]),
                usd(r["net_pnl_usd"]),
                usd(r["gross_pnl_usd"]),
                usd(r["gas_spent_usd"]),
                usd(r["max_drawdown_usd"]),
                pct(r["inclusion_rate"]),
                pct(r["revert_rate"]),
                str(r["alerts"]),
                cell(r["trading_state"]),
                cell(r["health"]),
            )
            for r in rows
        ],
        (1, 2, 3, 4, 5, 6, 7),
    )


def _portfolio(p: Mapping[str, Any], first: bool) -> str:
    from agents.reports.charts import exposure_var_chart  # matplotlib: 0.5 s, only when a report is drawn

    chart = exposure_var_chart(p["chart"], f"Portfolio {p['portfolio']}")
    img = f'<img class="chart" alt="exposure and VaR/ES of the day" src="{chart}">' if chart else ""
    return (
        f'<section class="{"portfolio" if first else "portfolio break"}">'
        f"<h2>Portfolio {cell(p['portfolio'])}</h2>"
        f'<p class="muted">{p["snapshots"]} snapshots, '
        f"{when(p['first_ts_ms'])} to {when(p['last_ts_ms'])} UTC</p>"
        f"<h3>Exposure and VaR/ES</h3>{_figures(p)}{img}"
        f"<h3>Limit utilisation</h3>{_limits(p)}"
        f"<h3>Alerts</h3>{alerts_table(p['alerts'])}<h3>MTTA and MTTR</h3>{mttx_tables(p['mttx'])}"
        f"<h3>Controls</h3>{controls_table(p['controls'])}"
        f"<h3>VaR backtest</h3>{_backtest(p['backtest'])}"
        f"<h3>Worst stress scenario</h3>{_stress(p['stress'])}"
        f"<h3>Strategies: P&amp;L and health</h3>{_strategies(p['strategies'])}</section>"
    )


def _quality(q: Mapping[str, Any]) -> str:
    d = q["dead_letters"]
    return (
        f"<h2>Data quality</h2><p>{d['total']} dead letters.</p>"
        + table(["reason", "dead letters"], [(cell(k), str(v)) for k, v in d["by_reason"].items()], (1,))
        + table(["source topic", "dead letters"], [(cell(k), str(v)) for k, v in d["by_topic"].items()], (1,))
        + table(
            ["feed", "stale minutes"],
            [(cell(k), f"{v:.2f}") for k, v in q["stale_feed_minutes"].items()],
            (1,),
        )
        + table(
            ["late or not applied", "events"], [(cell(k), str(v)) for k, v in q["late_events"].items()], (1,)
        )
    )


def _audit(a: Mapping[str, Any]) -> str:
    verdict = '<span class="ok">verified</span>' if a["ok"] else '<span class="bad">BROKEN</span>'
    rows = [
        (
            cell(c["stream"]),
            str(c["records"]),
            str(c["records_in_day"]),
            "ok" if c["ok"] else f"broken at seq {c['first_bad_seq']}: {cell(c['reason'])}",
            cell(c["head_seq"]),
            f'<span class="hash">{cell(c["head_hash"])}</span>',
        )
        for c in a["chains"]
    ]
    return (
        f"<h2>Audit trail</h2><p>{a['records']} records of <code>risk.audit</code>: {verdict}.</p>"
        + table(
            ["chain", "records", "this day", "verification", "head seq", "head hash (sha256)"], rows, (1, 2)
        )
    )


def render_html(model: Mapping[str, Any]) -> str:
    """The whole report as one HTML document."""
    title = f"MEV Risk Stream daily risk report, {model['date']}"
    firm = model["firm"]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=muted>UTC day {escape(model['date'])}, event time; "
        f"built from {cell(model['source'])}; {len(model['portfolios'])} portfolio(s); "
        f"report schema {escape(model['schema'])}.</p>"
        + "".join(_portfolio(p, i == 0) for i, p in enumerate(model["portfolios"]))
        + f'<section class="break"><h2>Firm-wide</h2><h3>Feed and global alerts</h3>'
        f"{alerts_table(firm['alerts'])}{mttx_tables(firm['mttx'])}"
        f"<h3>Global controls</h3>{controls_table(firm['controls'])}"
        + _quality(model["data_quality"])
        + _audit(model["audit"])
        + "</section></body></html>"
    )

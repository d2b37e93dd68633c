"""Charts of the report, drawn by matplotlib (Agg backend, no display) and embedded as
``data:`` URIs, so the HTML has no external asset and WeasyPrint needs no network."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

matplotlib.rcParams["svg.hashsalt"] = "mevrisk"  # deterministic ids in SVG output
_VAR_SERIES = (("var_95_usd", "VaR 95"), ("var_99_usd", "VaR 99"), ("es_95_usd", "ES 95"),
               ("es_99_usd", "ES 99"))


def _times(ts_ms: Sequence[int]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC) for t in ts_ms]


def _clean(values: Sequence[Any]) -> list[float]:
    return [float(v) if isinstance(v, int | float) else float("nan") for v in values]


def exposure_var_chart(chart: Mapping[str, Sequence[Any]], title: str) -> str | None:
    """Exposure (top) and VaR/ES 95/99 (bottom) over the day, as a PNG ``data:`` URI (None when
    there is nothing to draw)."""
    if not chart.get("ts_ms"):
        return None
    times = _times(chart["ts_ms"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, dpi=100)
    try:
        top.plot(times, _clean(chart["total_exposure_usd"]), color="#1f4e79", linewidth=1.2)
        top.set_ylabel("exposure, USD")
        top.set_title(title, fontsize=10)
        for key, label in _VAR_SERIES:
            bottom.plot(times, _clean(chart[key]), linewidth=1.0, label=label)
        bottom.set_ylabel("USD (loss)")
        bottom.legend(fontsize=7, ncols=4, loc="upper left")
        bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=dt.UTC))
        for ax in (top, bottom):
            ax.grid(True, linewidth=0.3)
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        bottom.set_xlabel("UTC")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

"""A tiny, safe annotation templater: ``{{ name }}`` and ``{{ name | filter }}``.

No code is evaluated: a placeholder is a dotted name looked up in a flat mapping,
optionally passed through one of a fixed set of filters. Unknown names render as
``n/a`` so a template never raises at notification time.

>>> render("VaR 95 {{ var_95_usd }} USD", {"var_95_usd": 12345.678})
'VaR 95 12345.68 USD'
>>> render("{{ max_concentration | pct }} in one asset", {"max_concentration": 0.6234})
'62.3% in one asset'
>>> render("{{ missing }} / {{ x | usd }}", {"x": 1234567.891})
'n/a / $1,234,567.89'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")


def _default(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.4g}"
    return str(v)


def _num(f: Callable[[float], str]) -> Callable[[Any], str]:
    def wrapped(v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return _default(v)
        return f(float(v))

    return wrapped


FILTERS: dict[str, Callable[[Any], str]] = {
    "pct": _num(lambda v: f"{v * 100:.1f}%"),
    "usd": _num(lambda v: f"${v:,.2f}"),
    "int": _num(lambda v: str(round(v))),
    "round": _num(lambda v: f"{v:.2f}"),
    "secs": _num(lambda v: f"{v / 1000:.0f}s"),
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
}


def template_problems(text: str) -> list[str]:
    """Unknown filters in a template (checked when rules load)."""
    return [f"unknown template filter {m.group(2)!r} (known: {', '.join(sorted(FILTERS))})"
            for m in PLACEHOLDER.finditer(text) if m.group(2) and m.group(2) not in FILTERS]


def render(text: str, values: Mapping[str, Any]) -> str:
    """Replace each placeholder with its value from ``values`` (``n/a`` when absent)."""

    def sub(m: re.Match[str]) -> str:
        v = values.get(m.group(1))
        if v is None:
            return "n/a"
        f = FILTERS.get(m.group(2) or "", _default)
        return f(v)

    return PLACEHOLDER.sub(sub, text)

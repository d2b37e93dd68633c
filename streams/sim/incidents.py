"""Named incidents: typed specs, the ``name@30s/20s`` parser and a rotating schedule.

>>> Incident.parse("flash-crash@30s/20s")
Incident(name='flash-crash', at_s=30.0, duration_s=20.0, params={})
>>> Incident.parse("gas-spike@1m").duration_s
20.0
>>> Incident.parse("stablecoin-depeg@10s", asset="DAI").param("asset")
'DAI'
>>> [i.name for i in incident_schedule_every(60, ["gas-spike", "feed-stall"], until_s=200)]
['gas-spike', 'feed-stall', 'gas-spike']
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.sim.errors import SimulatorError

#: Default duration (s) and parameters of every incident the simulator knows.
INCIDENT_DEFAULTS: dict[str, tuple[float, dict[str, Any]]] = {
    # ETH (and assets correlated with it, by beta) fall by `drop` over the window.
    "flash-crash": (5.0, {"asset": "ETH", "drop": 0.20, "vol_mult": 4.0, "depth_mult": 0.4}),
    # Reported base and priority fees on `chain` ("all" for every chain) x `factor`.
    "gas-spike": (20.0, {"chain": "ethereum", "factor": 8.0}),
    # Ticks from `source` (price-oracle, gas-tracker, liquidity-monitor) stop.
    "feed-stall": (15.0, {"source": "price-oracle"}),
    # Revert probability x `factor` for `strategy` ("all" for every strategy).
    "revert-storm": (20.0, {"strategy": "all", "factor": 6.0}),
    # `portfolio` piles into unhedged long `asset` positions (`size_mult` x usual size), ramping
    # to `target_usd` over the window, and holds them past its end.
    "concentration-build-up": (30.0, {"portfolio": "alpha", "asset": "ETH", "size_mult": 2.0,
                                      "target_usd": 20_000_000.0}),
    # `asset` is pulled to `price_usd`; its pool depth shrinks, spread widens.
    "stablecoin-depeg": (30.0, {"asset": "USDC", "price_usd": 0.95, "depth_mult": 0.3}),
    # Raw bytes: `count` bad messages spread over the window, cycling over BAD_KINDS.
    "bad-messages": (5.0, {"count": 8, "oversized_bytes": 1_200_000}),
}

_SPEC = re.compile(
    r"^(?P<name>[a-z][a-z0-9-]*)@(?P<at>\d+(?:\.\d+)?)(?P<at_u>ms|s|m)?"
    r"(?:/(?P<dur>\d+(?:\.\d+)?)(?P<dur_u>ms|s|m)?)?$"
)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


@dataclass(frozen=True)
class Incident:
    """An incident `name` active over [at_s, at_s + duration_s) after the simulation start."""

    name: str
    at_s: float
    duration_s: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in INCIDENT_DEFAULTS:
            raise SimulatorError(
                f"unknown incident {self.name!r}; known: {', '.join(INCIDENT_DEFAULTS)}"
            )
        if self.at_s < 0 or self.duration_s <= 0:
            raise SimulatorError(f"incident {self.name}: need at_s >= 0 and duration_s > 0")
        unknown = set(self.params) - set(INCIDENT_DEFAULTS[self.name][1])
        if unknown:
            raise SimulatorError(f"incident {self.name}: unknown params {sorted(unknown)}")

    @classmethod
    def make(cls, name: str, at_s: float, duration_s: float | None = None,
             **params: Any) -> Incident:
        """An incident with the default duration unless one is given."""
        if name not in INCIDENT_DEFAULTS:
            raise SimulatorError(
                f"unknown incident {name!r}; known: {', '.join(INCIDENT_DEFAULTS)}"
            )
        dur = INCIDENT_DEFAULTS[name][0] if duration_s is None else duration_s
        return cls(name, float(at_s), float(dur), dict(params))

    @classmethod
    def parse(cls, spec: str, **params: Any) -> Incident:
        """Parse ``name@AT[/DURATION]`` with units ms, s (default) or m."""
        m = _SPEC.match(spec.strip())
        if not m:
            raise SimulatorError(
                f"bad incident spec {spec!r}; expected NAME@AT[/DURATION], e.g. flash-crash@30s/20s"
            )
        at_s = float(m["at"]) * _UNIT_S[m["at_u"]]
        dur = None if m["dur"] is None else float(m["dur"]) * _UNIT_S[m["dur_u"]]
        return cls.make(m["name"], at_s, dur, **params)

    def param(self, key: str) -> Any:
        """A parameter, falling back to the incident's default."""
        return self.params.get(key, INCIDENT_DEFAULTS[self.name][1][key])

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


def incident_schedule_every(period_s: float, names: Sequence[str], *,
                            first_at_s: float | None = None,
                            until_s: float | None = None) -> Iterator[Incident]:
    """Rotate through `names`, one incident every `period_s` (lazy; endless without `until_s`).

    Each incident keeps its default duration, capped so it ends before the next one starts.
    """
    if period_s <= 0 or not names:
        raise SimulatorError("incident rotation needs period_s > 0 and at least one name")
    t = period_s if first_at_s is None else first_at_s
    for name in itertools.cycle(names):
        if until_s is not None and t >= until_s:
            return
        default = INCIDENT_DEFAULTS[name][0] if name in INCIDENT_DEFAULTS else period_s
        yield Incident.make(name, t, min(default, period_s * 0.9))
        t += period_s

"""Typed run options for ``mevrisk simulate``, with defaults from ``deploy/config/simulator.yaml``.

>>> opts = SimulationOptions(incidents=("gas-spike@10s",), rotate_every_s=None)
>>> [i.name for i in opts.incident_schedule()]
['gas-spike']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml

from streams.sim.errors import SimulatorError
from streams.sim.incidents import INCIDENT_DEFAULTS, Incident, incident_schedule_every
from streams.sim.publisher import Pace


@dataclass(frozen=True)
class SimulationOptions:
    """Everything a simulate run needs besides where to send it."""

    seed: int = 7
    rate_eps: float = 200.0
    duration_s: float | None = None
    pace: Pace = "realtime"
    speed: float = 1.0
    incidents: tuple[str, ...] = ()
    rotate_every_s: float | None = None
    rotate: tuple[str, ...] = tuple(INCIDENT_DEFAULTS)

    def __post_init__(self) -> None:
        if self.pace not in get_args(Pace):
            raise SimulatorError(f"pace must be one of {get_args(Pace)}, not {self.pace!r}")
        if self.rate_eps <= 0 or self.speed <= 0:
            raise SimulatorError("rate_eps and speed must be > 0")
        for spec in self.incidents:
            Incident.parse(spec)
        unknown = set(self.rotate) - set(INCIDENT_DEFAULTS)
        if unknown:
            raise SimulatorError(f"unknown incidents in rotate: {sorted(unknown)}")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SimulationOptions:
        """Options from a YAML file; `overrides` (e.g. CLI flags that were given) win."""
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise SimulatorError(f"{path}: expected a mapping")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - fields
        if unknown:
            raise SimulatorError(f"{path}: unknown keys {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("incidents", "rotate"):
            if key in raw:
                raw[key] = tuple(raw[key] or ())
        return cls(**raw)

    def incident_schedule(self) -> Iterable[Incident]:
        """Explicit incidents, or (when `rotate_every_s` is set and none are) the rotation."""
        if self.incidents or not self.rotate_every_s:
            return [Incident.parse(s) for s in self.incidents]
        return incident_schedule_every(self.rotate_every_s, self.rotate, until_s=self.duration_s)

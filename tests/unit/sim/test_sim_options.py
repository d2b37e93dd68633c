"""deploy/config/simulator.yaml parses into typed options."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from streams.sim import SimulatorError
from streams.sim.options import SimulationOptions

CONFIG = Path(__file__).parents[3] / "deploy" / "config" / "simulator.yaml"


def test_shipped_defaults_parse_and_rotate_every_minute() -> None:
    opts = SimulationOptions.from_yaml(CONFIG)
    assert opts.pace == "realtime" and opts.duration_s is None
    first = list(islice(opts.incident_schedule(), 3))
    assert [i.at_s for i in first] == [60.0, 120.0, 180.0]


def test_overrides_win_and_explicit_incidents_replace_the_rotation() -> None:
    opts = SimulationOptions.from_yaml(CONFIG, seed=99, incidents=["gas-spike@5s/3s"], pace=None)
    assert opts.seed == 99 and opts.pace == "realtime"
    assert [(i.name, i.at_s, i.duration_s) for i in opts.incident_schedule()] == [("gas-spike", 5.0, 3.0)]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError):
        SimulationOptions(pace="slow")  # type: ignore[arg-type]
    with pytest.raises(SimulatorError):
        SimulationOptions(incidents=("meteor@1s",))
    bad = tmp_path / "sim.yaml"
    bad.write_text("sed: 1\n")
    with pytest.raises(SimulatorError, match="unknown keys"):
        SimulationOptions.from_yaml(bad)

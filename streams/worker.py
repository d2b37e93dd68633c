"""Imports every agent module so that the one Faust app knows them, then runs Faust's CLI."""

from __future__ import annotations

import agents.ingest.agent  # noqa: F401 - registers the input agents
import streams.host
import streams.web  # noqa: F401 - registers /metrics
from streams.app import app
from streams.wiring import install_pipeline

install_pipeline()

__all__ = ["app"]

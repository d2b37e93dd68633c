"""Imports every agent module so that the one Faust app knows them, then builds the pipeline."""

from __future__ import annotations

import streams.host
import streams.ingest
import streams.notify
import streams.peer_watch
import streams.web
from streams.api import register_views
from streams.app import app
from streams.wiring import install_pipeline

AGENT_MODULES = (streams.ingest, streams.notify, streams.host, streams.web, streams.peer_watch)
"""Imported for their side effect: they register agents, tasks and views on ``app``."""

install_pipeline(streams.host.host)
register_views(app, streams.host.host)

__all__ = ["app"]

"""Deterministic MEV market / operations simulator and its Kafka publisher.

The generator side (:mod:`streams.sim.generator` and friends) is pure: no Faust, no
Kafka, no wall clock. :mod:`streams.sim.publisher` is the aiokafka edge.
"""

from streams.sim.badmessages import BAD_KINDS, make_bad_message
from streams.sim.config import SimConfig, default_config
from streams.sim.desk import TradingState
from streams.sim.errors import SimulatorError
from streams.sim.events import Event
from streams.sim.generator import SOURCES, Simulator
from streams.sim.incidents import INCIDENT_DEFAULTS, Incident, incident_schedule_every
from streams.sim.record import read_events, replay_order, write_events

__all__ = [
    "BAD_KINDS",
    "INCIDENT_DEFAULTS",
    "SOURCES",
    "Event",
    "Incident",
    "SimConfig",
    "Simulator",
    "SimulatorError",
    "TradingState",
    "default_config",
    "incident_schedule_every",
    "make_bad_message",
    "read_events",
    "replay_order",
    "write_events",
]

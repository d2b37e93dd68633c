"""The simulator run live for the browser test: ``mevrisk simulate``'s publish loop (paced,
following ``risk.controls`` so a HALT stops the strategy) on the test's prefixed topics.

``mevrisk simulate`` publishes to the unprefixed contract topic names (only ``replay``
applies ``MEVRISK_TOPIC_PREFIX``), so the test runs the same :func:`publish` with the prefix
added. Run as ``python -m tests.e2e.live_sim --seed 5 --rate 150 --duration 1200 ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.settings import get_settings
from streams.sim.generator import Simulator
from streams.sim.incidents import Incident
from streams.sim.publisher import publish
from streams.topics import CONTROLS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--duration", type=float, default=1200.0)
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--incident", action="append", default=[])
    parser.add_argument("--speed", type=float, default=5.0)
    args = parser.parse_args(argv)
    settings = get_settings()
    sim = Simulator(args.seed, args.start_ms, args.rate, args.duration,
                    [Incident.parse(spec) for spec in args.incident])
    events = (ev._replace(topic=settings.topic_prefix + ev.topic) for ev in sim)
    stats = asyncio.run(publish(events, settings.kafka_bootstrap_servers, "realtime", speed=args.speed,
                                controls_topic=CONTROLS, on_control=sim.apply_control))
    print(f"live_sim: {stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

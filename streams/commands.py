"""Subcommands that wrap the pure cores: simulate, replay, var, backtest-var, rules, audit.

Arguments are parsed here, at the edge, into typed values before any core sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from agents.errors import MevRiskError
from streams.settings import get_settings


def _print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from streams.sim.incidents import Incident, incident_schedule_every
    from streams.sim.publisher import run_simulation
    from streams.topics import CONTROLS

    incidents: Any = [Incident.parse(spec) for spec in args.incident]
    if args.incident_every:
        incidents = incident_schedule_every(args.incident_every, args.incident_names.split(","))
    bootstrap = None if args.record and not args.publish else get_settings().kafka_bootstrap_servers
    stats = asyncio.run(
        run_simulation(
            seed=args.seed, rate_eps=args.rate, duration_s=args.duration, incidents=incidents,
            bootstrap=bootstrap, pace=args.pace, speed=args.speed, start_ms=args.start_ms,
            record_path=Path(args.record) if args.record else None,
            controls_topic=CONTROLS if bootstrap else None,
            topic_prefix=get_settings().topic_prefix,
        )
    )
    print(f"simulate: {stats}", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.offline:
        from agents.assembly import PipelineOptions
        from agents.replay import read_lines, replay

        options = PipelineOptions(
            rules_path=Path(args.rules) if args.rules else None,
            bar_ms=args.bar_ms or get_settings().bar_ms,
            allowed_lateness_ms=get_settings().allowed_lateness_ms,
        )
        result = replay(read_lines(path), options)
        alerts = result.of("risk.alerts")
        lines = b"".join(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) + b"\n" for a in alerts)
        if args.out:
            Path(args.out).write_bytes(lines)
        else:
            sys.stdout.buffer.write(lines)
        print(
            f"replay: {len(result.of('risk.snapshots'))} snapshots, {len(alerts)} alert events, "
            f"{len(result.of('risk.controls'))} controls, rejected {dict(result.rejected)}",
            file=sys.stderr,
        )
        return 0
    from streams.sim.publisher import publish
    from streams.sim.record import read_events, replay_order

    prefix = get_settings().topic_prefix
    events = [ev._replace(topic=prefix + ev.topic) for ev in replay_order(read_events(path))]
    stats = asyncio.run(
        publish(events, get_settings().kafka_bootstrap_servers, args.pace, speed=args.speed)
    )
    print(f"replay: {stats}", file=sys.stderr)
    return 0


def _cmd_var(args: argparse.Namespace) -> int:
    from agents.risk.offline import compute_var

    _print_json(compute_var(args.prices, args.positions, args.confidence, args.window, args.method))
    return 0


def _cmd_backtest_var(args: argparse.Namespace) -> int:
    from agents.risk.offline import backtest_var

    _print_json(backtest_var(args.prices, args.positions, args.confidence, args.window, args.method))
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from agents.alerts.rules import check_file

    problems = check_file(args.file)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.file}: ok")
    return 1 if problems else 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from agents.audit.chain import verify_chains

    if args.file:
        records = [orjson.loads(line) for line in Path(args.file).read_bytes().splitlines() if line.strip()]
    else:
        from streams.audit_reader import read_audit_topic

        records = asyncio.run(read_audit_topic(get_settings().kafka_bootstrap_servers))
    results = verify_chains(records)
    for stream, (ok, bad_seq, reason) in results.items():
        count = sum(1 for r in records if r.get("stream") == stream)
        verdict = "ok" if ok else f"BROKEN at seq {bad_seq}: {reason}"
        print(f"audit chain {stream}: {count} records, {verdict}")
    print(f"audit: {len(records)} records in {len(results)} chains, "
          f"{'ok' if all(ok for ok, _, _ in results.values()) else 'BROKEN'}")
    return 0 if all(ok for ok, _, _ in results.values()) else 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _confidence(text: str) -> float:
    value = float(text)
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"confidence must be in [0.5, 1), got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the core-backed subcommands to ``mevrisk``'s parser."""
    sim = sub.add_parser("simulate", help="publish (or record) a deterministic synthetic MEV operation")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--rate", type=float, default=200.0, help="events per second of event time")
    sim.add_argument("--duration", type=float, default=None, help="seconds of event time (default: forever)")
    sim.add_argument("--incident", action="append", default=[], metavar="NAME@AT[/DUR]",
                     help="schedule an incident, e.g. flash-crash@30s/20s (repeatable)")
    sim.add_argument("--incident-every", type=float, default=0.0, metavar="SECONDS",
                     help="rotate through --incident-names every SECONDS")
    sim.add_argument("--incident-names", default="flash-crash,gas-spike,revert-storm,feed-stall,"
                     "concentration-build-up,stablecoin-depeg,bad-messages")
    sim.add_argument("--pace", choices=["realtime", "fast"], default="realtime")
    sim.add_argument("--speed", type=float, default=1.0, help="realtime pace multiplier")
    sim.add_argument("--start-ms", type=int, default=None, help="event time of the start (default: now)")
    sim.add_argument("--record", metavar="FILE.jsonl", help="write the events to FILE (JSON lines)")
    sim.add_argument("--publish", action="store_true", help="with --record: publish as well")
    sim.set_defaults(func=_cmd_simulate)

    rep = sub.add_parser("replay", help="publish a recorded file, or run it offline through the cores")
    rep.add_argument("file")
    rep.add_argument("--offline", action="store_true", help="no Kafka: pure pipeline, alert events out")
    rep.add_argument("--rules", help="rules file for --offline (default deploy/config/rules.yaml)")
    rep.add_argument("--out", help="--offline: write alert events here (JSON lines; default stdout)")
    rep.add_argument("--bar-ms", type=_positive_int, default=None)
    rep.add_argument("--pace", choices=["realtime", "fast"], default="fast")
    rep.add_argument("--speed", type=float, default=1.0)
    rep.set_defaults(func=_cmd_replay)

    for name, func, window in (("var", _cmd_var, 500), ("backtest-var", _cmd_backtest_var, 250)):
        p = sub.add_parser(name, help=f"{name} from a prices CSV and a positions JSON (USD exposures)")
        p.add_argument("--prices", required=True, help="CSV: timestamps, then one price column per asset")
        p.add_argument("--positions", required=True, help="JSON object: asset -> exposure in USD")
        p.add_argument("--confidence", type=_confidence, default=0.99)
        p.add_argument("--window", type=_positive_int, default=window)
        p.add_argument("--method", choices=["historical", "parametric"], default="historical")
        p.set_defaults(func=func)

    rules = sub.add_parser("rules", help="validate a rules file without running it")
    rules.add_argument("action", choices=["check"])
    rules.add_argument("file")
    rules.set_defaults(func=_cmd_rules)

    audit = sub.add_parser("audit", help="verify the hash chain of risk.audit (or of a JSON-lines file)")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("--file", help="JSON lines of audit records instead of the topic")
    audit.set_defaults(func=_cmd_audit)


def run_guarded(func: Any, args: argparse.Namespace) -> int:
    """Run a subcommand; project errors become one clear line on stderr and exit code 2."""
    from aiokafka.errors import KafkaConnectionError

    try:
        return int(func(args) or 0)
    except MevRiskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError:
        bootstrap = get_settings().kafka_bootstrap_servers
        print(f"error: cannot reach Kafka at {bootstrap}; start the local broker with "
              "'mevrisk broker start' or set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2

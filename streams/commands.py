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
            coalesce_ms=get_settings().snapshot_coalesce_ms,
            refresh_on_price=get_settings().refresh_on_price,
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


def _expected_heads(anchors: list[str], records: list[dict[str, Any]]) -> dict[str, str]:
    """``--expect-head`` values (``STREAM=HASH``, or a bare ``HASH`` found in whichever chain holds
    it) as ``{stream: hash}``; a bare hash no chain holds is expected of the ``?`` chain (truncated)."""
    out: dict[str, str] = {}
    for anchor in anchors:
        stream, sep, digest = anchor.rpartition("=")
        if not sep:
            holders = {str(r.get("stream")) for r in records if r.get("hash") == digest}
            stream = min(holders) if holders else f"? (no chain holds {digest[:16]}...)"
        out[stream] = digest
    return out


def _cmd_audit(args: argparse.Namespace) -> int:
    from agents.audit.chain import verify_chains
    from streams.wiring import audit_mac_key

    if args.file:
        records = []
        for n, line in enumerate(Path(args.file).read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                print(f"{args.file}:{n}: not JSON ({exc}): the chain it belongs to will not verify",
                      file=sys.stderr)
                continue
            if isinstance(value, dict):
                records.append(value)
    else:
        from streams.audit_reader import read_audit_topic

        records = asyncio.run(read_audit_topic(get_settings().kafka_bootstrap_servers))
    key = audit_mac_key(get_settings())
    if key is None:
        print("audit: tags not checked (MEVRISK_CHECKPOINT_SECRET is not set): only the hash chains are",
              file=sys.stderr)
    results = verify_chains(records, key=key, expected_heads=_expected_heads(args.expect_head, records))
    for stream, (ok, bad_seq, reason) in results.items():
        chain = [r for r in records if r.get("stream") == stream]
        verdict = "ok" if ok else f"BROKEN at seq {bad_seq}: {reason}"
        head = f", head {chain[-1].get('hash')}" if chain else ""
        print(f"audit chain {stream}: {len(chain)} records{head}, {verdict}")
    all_ok = all(ok for ok, _, _ in results.values())
    print(f"audit: {len(records)} records in {len(results)} chains, "
          f"{'tags checked, ' if key else ''}{'ok' if all_ok else 'BROKEN'}")
    return 0 if all_ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from agents.reports.day import day_bounds
    from agents.reports.render import parse_formats, render

    day_bounds(args.date)  # a bad date fails before any reading

    settings = get_settings()
    formats = parse_formats(args.format)
    bar_ms = args.bar_ms or settings.bar_ms or _configured_bar_ms(settings.config_dir)
    model = _report_from_replay(args, bar_ms) if args.replay else _report_from_topics(args, bar_ms)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"report-{args.date}" + (f"-{args.portfolio}" if args.portfolio else "")
    for fmt, data in render(model, formats).items():
        path = out_dir / f"{stem}.{fmt}"
        path.write_bytes(data)
        print(path)
    return 0


def _configured_bar_ms(config_dir: Path) -> int:
    from agents.risk.config import load_risk_config

    return int(load_risk_config(config_dir / "risk.yaml").bar_ms)


def _report_from_replay(args: argparse.Namespace, bar_ms: int) -> dict[str, Any]:
    from agents.assembly import PipelineOptions
    from agents.reports.model import ReportOptions, build_model
    from agents.reports.source import records_from_recording

    path = Path(args.replay)
    options = PipelineOptions(rules_path=Path(args.rules) if args.rules else None, bar_ms=bar_ms,
                              allowed_lateness_ms=get_settings().allowed_lateness_ms)
    records = records_from_recording(path, options)
    return build_model(records, args.date, args.portfolio,
                       ReportOptions(bar_ms=bar_ms, source=f"replay of {path.name}"))


def _report_from_topics(args: argparse.Namespace, bar_ms: int) -> dict[str, Any]:
    from agents.reports.day_model import model_for_day
    from agents.reports.model import ReportOptions
    from streams.report_reader import read_day

    settings = get_settings()
    day = asyncio.run(read_day(settings.kafka_bootstrap_servers, args.date, settings.max_future_skew_ms))
    if day.malformed:
        print(f"report: skipped {day.malformed} malformed records", file=sys.stderr)
    # older than risk.snapshots' retention: the day's archive from risk.reports
    return model_for_day(day.records, day.archived, args.date, args.portfolio,
                         ReportOptions(bar_ms=bar_ms, source="topics"))


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

    report = sub.add_parser("report", help="daily risk and compliance report (HTML, PDF, JSON)")
    report.add_argument("period", choices=["daily"])
    report.add_argument("--date", required=True, help="UTC day, YYYY-MM-DD (event time)")
    report.add_argument("--portfolio", default=None, help="one portfolio (default: every one)")
    report.add_argument("--format", default="html,pdf,json", help="comma-separated: html, pdf, json")
    report.add_argument("--out", default=".", help="directory for report-DATE[-PORTFOLIO].FORMAT")
    report.add_argument("--replay", metavar="FILE.jsonl",
                        help="build from a recording through the offline pipeline (no Kafka)")
    report.add_argument("--rules", help="--replay: rules file (default deploy/config/rules.yaml)")
    report.add_argument("--bar-ms", type=_positive_int, default=None,
                        help="bar of the run (default MEVRISK_BAR_MS, else risk.yaml)")
    report.set_defaults(func=_cmd_report)

    audit = sub.add_parser("audit", help="verify the hash chain of risk.audit (or of a JSON-lines file)")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("--file", help="JSON lines of audit records instead of the topic")
    audit.add_argument("--expect-head", action="append", default=[], metavar="[STREAM=]HASH",
                       help="a chain head stored earlier (an anchor): the chain must still hold it, so "
                            "deleting its newest records is detected (repeatable)")
    audit.set_defaults(func=_cmd_audit)


def run_guarded(func: Any, args: argparse.Namespace) -> int:
    """Run a subcommand; project errors become one clear line on stderr and exit code 2."""
    from aiokafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        KafkaConnectionError,
        TopicAuthorizationFailedError,
    )

    try:
        return int(func(args) or 0)
    except MevRiskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError:
        settings = get_settings()
        bootstrap, user = settings.kafka_bootstrap_servers, settings.kafka_sasl_username
        if user is not None:
            print(f"error: cannot connect to Kafka at {bootstrap} as User:{user}; is the broker up, and "
                  "are MEVRISK_KAFKA_SASL_USERNAME / _PASSWORD / _MECHANISM right?", file=sys.stderr)
        else:
            print(f"error: cannot reach Kafka at {bootstrap}; start the local broker with "
                  "'mevrisk broker start' or set KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError,
            ClusterAuthorizationFailedError) as exc:
        user = get_settings().kafka_sasl_username
        print(f"error: Kafka denied this to User:{user or 'ANONYMOUS'} ({exc}); see the README's "
              "Secured broker for who may do what", file=sys.stderr)
        return 2

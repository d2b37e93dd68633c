"""``mevrisk``: the project's own subcommands, plus Faust's CLI for everything else.

Ours: broker, topics, schemas, simulate, replay, var, backtest-var, rules, audit, report.
``mevrisk worker`` (and any other Faust command) runs Faust's CLI on ``streams.app``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from streams.settings import REPO_ROOT, get_settings

OWN_COMMANDS = {"broker", "topics", "schemas", "simulate", "replay", "var", "backtest-var", "rules", "audit",
                "report"}


def _cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import LocalBroker, main_broker

    return main_broker(args.action, LocalBroker(port=args.port, controller_port=args.port + 1))


def _cmd_topics(args: argparse.Namespace) -> int:
    from streams.admin import create_topics
    from streams.topics import TOPIC_SPECS

    settings = get_settings()
    outcome = asyncio.run(
        create_topics(
            settings.kafka_bootstrap_servers, TOPIC_SPECS,
            settings.topic_partitions, settings.topic_replication,
        )
    )
    for name, state in outcome.items():
        print(f"{name}\t{state}")
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.contracts import exported_schemas

    out_dir = REPO_ROOT / "schemas" / "json"
    stale = []
    for name, schema in exported_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = out_dir / name
        if args.action == "check":
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(path)
    if stale:
        print(f"out of date: {', '.join(stale)} (run 'mevrisk schemas export')", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mevrisk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="fetch, start, stop or query the local Kafka broker")
    broker.add_argument("action", choices=["start", "stop", "status", "fetch"])
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=_cmd_broker)

    topics = sub.add_parser("topics", help="create the project's topics (idempotent)")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=_cmd_topics)

    schemas = sub.add_parser("schemas", help="export or check schemas/json/*.schema.json")
    schemas.add_argument("action", choices=["export", "check"])
    schemas.set_defaults(func=_cmd_schemas)

    from streams import commands

    commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in OWN_COMMANDS:
        from streams.commands import run_guarded

        args = _parser().parse_args(argv)
        return run_guarded(args.func, args)
    if not argv or argv[0] in {"-h", "--help"}:
        _parser().print_help()
        print("\nFaust commands (worker, agents, tables, ...): mevrisk worker --help")
        return 0
    from streams.worker import app

    sys.argv = ["mevrisk", *argv]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Path", "main"]

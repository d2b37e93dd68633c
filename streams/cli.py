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
from typing import TYPE_CHECKING

from streams.settings import REPO_ROOT, get_settings

if TYPE_CHECKING:
    from streams.kafka_acls import AclRule

OWN_COMMANDS = {"broker", "topics", "schemas", "simulate", "replay", "var", "backtest-var", "rules", "audit",
                "report"}


def _cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import LocalBroker, last_started_secured, main_broker

    # status probes with the admin's credentials when the broker on this port is the secured one
    secured = args.secured or (args.action == "status"
                               and bool(last_started_secured(LocalBroker(port=args.port))))
    broker = LocalBroker(port=args.port, controller_port=args.port + 1, secured=secured)
    if args.action == "acls":
        return _print_acls(args)
    code = main_broker(args.action, broker)
    if code == 0 and args.secured and args.action == "start":
        from streams.secured_broker import ensure_set_up

        ensure_set_up(broker, _acl_plan())
        print(f"users and ACLs set; each role's environment: {broker.secured_dir}/<admin|worker|bot>.env")
    return code


def _acl_plan() -> tuple[AclRule, ...]:
    from streams.kafka_acls import Principals, acl_plan

    settings = get_settings()
    return acl_plan(settings.topic_prefix, settings.app_id, Principals(), f"{settings.app_id}-bot")


def _print_acls(args: argparse.Namespace) -> int:
    """The kafka-configs / kafka-acls commands that secure an existing cluster the same way."""
    from streams.kafka_acls import Principals, cluster_commands

    print(cluster_commands(args.bootstrap or get_settings().kafka_bootstrap_servers, _acl_plan(),
                           Principals()), end="")
    return 0


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
    broker.add_argument("action", choices=["start", "stop", "status", "fetch", "acls"],
                        help="acls: print the kafka-configs/kafka-acls commands for an existing cluster")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--secured", action="store_true",
                        help="SASL/SCRAM listeners and ACLs (admin, worker and bot users)")
    broker.add_argument("--bootstrap", help="acls: the cluster's bootstrap servers (default: the setting)")
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

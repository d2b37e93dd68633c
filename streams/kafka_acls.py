"""Who may do what on the cluster: the ACLs of the three principals, as ``kafka-acls`` arguments.

* the admin (a super user of the broker): creates topics (``mevrisk topics create``), users and ACLs;
* the worker: owns ``risk.*`` (read, write, create, describe) and the Faust-internal topics named
  after its app id (the assignor's leader topic, table changelogs), reads the three input topics
  in its consumer group (the app id);
* a bot: writes only the three input topics, reads ``risk.controls`` in its own group.

The worker writes without transactions (Faust's ``at_least_once``; aiokafka's idempotent producer is
off), and since Kafka 3.0 ``Write`` on a topic implies the cluster's ``IdempotentWrite`` anyway.
The same plan drives the local secured broker (``streams.secured_broker``, through Kafka's own
``AclCommand`` and ``ConfigCommand``) and the commands ``mevrisk broker acls`` prints for an
existing cluster (``kafka-acls.sh`` / ``kafka-configs.sh``), so the README's commands are the ones
the integration test runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

from streams.topics import CONTROLS, MARKET_TICKS, POSITIONS, STRATEGY_STATS

INPUT_TOPICS = (MARKET_TICKS, POSITIONS, STRATEGY_STATS)
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Principals:
    """User names of the three roles (Kafka principals ``User:<name>``)."""

    admin: str = "mevrisk-admin"
    worker: str = "mevrisk-worker"
    bot: str = "mevrisk-bot"


@dataclass(frozen=True)
class AclRule:
    """Allow ``principal`` the ``operations`` on every topic and group named (one ``kafka-acls --add``)."""

    principal: str
    operations: tuple[str, ...]
    topics: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    pattern: Literal["literal", "prefixed"] = "literal"
    why: str = ""

    def args(self) -> list[str]:
        """The ``kafka-acls`` arguments after the connection options."""
        out = ["--add", "--allow-principal", f"User:{self.principal}"]
        for op in self.operations:
            out += ["--operation", op]
        for topic in self.topics:
            out += ["--topic", topic]
        for group in self.groups:
            out += ["--group", group]
        return [*out, "--resource-pattern-type", self.pattern]


def acl_plan(topic_prefix: str, app_id: str, principals: Principals, bot_group: str) -> tuple[AclRule, ...]:
    """The ACLs for topics named ``<topic_prefix><contract name>`` and a worker app ``app_id``."""
    inputs = tuple(f"{topic_prefix}{name}" for name in INPUT_TOPICS)
    return (
        AclRule(principals.worker, ("Read", "Write", "Create", "Describe"),
                topics=(f"{topic_prefix}risk.", f"{app_id}-"), pattern="prefixed",
                why="the worker owns risk.* and its Faust-internal topics (assignor, changelogs)"),
        AclRule(principals.worker, ("Read", "Describe"), topics=inputs, groups=(app_id,),
                why="the worker consumes the input topics in its consumer group"),
        AclRule(principals.bot, ("Write", "Describe"), topics=inputs,
                why="a bot writes the three input topics, nothing else"),
        AclRule(principals.bot, ("Read", "Describe"), topics=(f"{topic_prefix}{CONTROLS}",),
                groups=(bot_group,),
                why="a bot reads risk.controls, in its own consumer group"),
    )


def scram_user_args(user: str, password: str) -> list[str]:
    """The ``kafka-configs`` arguments (after the connection options) that set ``user``'s password."""
    return ["--alter", "--add-config", f"{SCRAM_MECHANISM}=[password={password}]",
            "--entity-type", "users", "--entity-name", user]


def cluster_commands(bootstrap: str, plan: tuple[AclRule, ...], principals: Principals,
                     command_config: str = "admin.properties") -> str:
    """The shell commands that set up ``plan`` on an existing cluster, run as its admin.

    Passwords are read from ``$WORKER_PASSWORD`` and ``$BOT_PASSWORD``; ``command_config`` is the
    admin's client configuration (``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config``)."""
    connect = ["--bootstrap-server", bootstrap, "--command-config", command_config]
    lines = ["# SCRAM users of the worker and the bots"]
    for user, var in ((principals.worker, "WORKER_PASSWORD"), (principals.bot, "BOT_PASSWORD")):
        args = scram_user_args(user, f"${{{var}}}")
        quoted = [f'"{a}"' if "${" in a else shlex.quote(a) for a in args]
        lines.append(" ".join(["kafka-configs.sh", *map(shlex.quote, connect), *quoted]))
    for rule in plan:
        lines.append(f"# {rule.why}")
        lines.append(" ".join(["kafka-acls.sh", *map(shlex.quote, connect), *map(shlex.quote, rule.args())]))
    return "\n".join(lines) + "\n"

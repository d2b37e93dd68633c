"""The local broker's secured mode: SASL/SCRAM-SHA-512 users, their credentials, and the ACLs.

``mevrisk broker start --secured`` formats the broker with the admin's SCRAM credential (the broker's
own inter-broker login), then, as that admin, creates the worker's and the bot's SCRAM users and the
ACLs of ``streams.kafka_acls`` with Kafka's own ``ConfigCommand`` and ``AclCommand`` (the classes
behind ``kafka-configs.sh`` and ``kafka-acls.sh``). Random passwords are generated once per broker
directory and kept in ``<secured_dir>/credentials.json``; ``<role>.env`` holds the ``MEVRISK_KAFKA_*``
variables each role's processes connect with. Every file here is mode 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from streams.broker import KAFKA_DEPLOY_DIR, BrokerError, LocalBroker, _java_cmd
from streams.kafka_acls import SCRAM_MECHANISM, AclRule, Principals, scram_user_args

Role = Literal["admin", "worker", "bot"]
ROLES: tuple[Role, ...] = ("admin", "worker", "bot")


@dataclass(frozen=True)
class Credentials:
    """Passwords of the three roles and of the controller's internal listener."""

    admin: str
    worker: str
    bot: str
    controller: str

    @classmethod
    def generate(cls) -> Credentials:
        # token_urlsafe: [A-Za-z0-9_-] only, so safe inside JAAS quotes and SCRAM's [name=..,password=..]
        return cls(*(secrets.token_urlsafe(24) for _ in range(4)))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def credentials(broker: LocalBroker) -> Credentials:
    """The broker's credentials, generated on first use and kept beside its data."""
    path = broker.secured_dir / "credentials.json"
    try:
        return Credentials(**json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    except (ValueError, TypeError) as exc:
        raise BrokerError(f"{path} is unreadable ({exc}); delete {broker.secured_dir} to start afresh"
                          ) from exc
    if broker.data_dir.exists():
        raise BrokerError(f"{broker.data_dir} exists but {path} is gone: its users' passwords are lost; "
                          f"delete {broker.secured_dir} to start afresh")
    broker.secured_dir.mkdir(parents=True, exist_ok=True)
    made = Credentials.generate()
    _write_private(path, json.dumps(asdict(made)))
    return made


def overlay(broker: LocalBroker) -> str:
    """``deploy/kafka/secured.properties`` filled in for ``broker``."""
    creds = credentials(broker)
    values = {"PORT": str(broker.port), "CONTROLLER_PORT": str(broker.controller_port),
              "ADMIN_USER": Principals().admin, "ADMIN_PASSWORD": creds.admin,
              "CONTROLLER_PASSWORD": creds.controller}
    text = (KAFKA_DEPLOY_DIR / "secured.properties").read_text()
    for name, value in values.items():
        text = text.replace(f"${{{name}}}", value)
    return text


def format_args(broker: LocalBroker) -> list[str]:
    """``StorageTool format`` arguments that put the admin's SCRAM credential in the metadata log."""
    admin = Principals().admin
    return ["--add-scram", f"{SCRAM_MECHANISM}=[name={admin},password={credentials(broker).admin}]"]


def _user(role: Role) -> str:
    return str(getattr(Principals(), role))


def role_env(broker: LocalBroker, role: Role) -> dict[str, str]:
    """The environment a process of ``role`` connects to ``broker`` with (``streams.settings``)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "MEVRISK_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MEVRISK_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "MEVRISK_KAFKA_SASL_USERNAME": _user(role),
        "MEVRISK_KAFKA_SASL_PASSWORD": getattr(credentials(broker), role),
    }


def role_client_kwargs(broker: LocalBroker, role: Role) -> dict[str, Any]:
    """aiokafka settings of ``role`` on ``broker`` (for tools that are not configured by environment)."""
    env = role_env(broker, role)
    return {"security_protocol": env["MEVRISK_KAFKA_SECURITY_PROTOCOL"],
            "sasl_mechanism": env["MEVRISK_KAFKA_SASL_MECHANISM"],
            "sasl_plain_username": env["MEVRISK_KAFKA_SASL_USERNAME"],
            "sasl_plain_password": env["MEVRISK_KAFKA_SASL_PASSWORD"]}


def admin_properties(broker: LocalBroker) -> Path:
    """The admin's client configuration for Kafka's tools (``--command-config``)."""
    path = broker.secured_dir / "admin.properties"
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{_user("admin")}" password="{credentials(broker).admin}";')
    _write_private(path, "security.protocol=SASL_PLAINTEXT\n"
                         f"sasl.mechanism={SCRAM_MECHANISM}\nsasl.jaas.config={jaas}\n")
    return path


def write_env_files(broker: LocalBroker) -> dict[Role, Path]:
    """``<secured_dir>/<role>.env`` for each role: ``set -a; . worker.env; set +a`` before a command."""
    out: dict[Role, Path] = {}
    for role in ROLES:
        path = broker.secured_dir / f"{role}.env"
        _write_private(path, "".join(f"{k}={v}\n" for k, v in role_env(broker, role).items()))
        out[role] = path
    return out


def _kafka_tool(broker: LocalBroker, main_class: str, args: list[str]) -> None:
    cmd = _java_cmd(broker, main_class, "--bootstrap-server", broker.bootstrap,
                    "--command-config", str(admin_properties(broker)), *args)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise BrokerError(f"{main_class} {args[:3]} failed:\n{result.stdout[-2000:]}\n"
                          f"{result.stderr[-2000:]}")


def set_up(broker: LocalBroker, plan: tuple[AclRule, ...]) -> None:
    """As the admin, create the worker's and the bot's SCRAM users and every ACL of ``plan``
    (idempotent: Kafka keeps one copy of each). The broker must be running."""
    creds = credentials(broker)
    for role in ("worker", "bot"):
        _kafka_tool(broker, "kafka.admin.ConfigCommand", scram_user_args(_user(role), getattr(creds, role)))
    for rule in plan:
        _kafka_tool(broker, "kafka.admin.AclCommand", rule.args())
    write_env_files(broker)


def ensure_set_up(broker: LocalBroker, plan: tuple[AclRule, ...]) -> bool:
    """``set_up`` unless this exact plan was applied to this broker's data already; True if it ran."""
    marker = broker.data_dir / "mevrisk-acls.json"
    wanted = json.dumps([asdict(rule) for rule in plan], sort_keys=True)
    if marker.exists() and marker.read_text() == wanted:
        write_env_files(broker)
        return False
    set_up(broker, plan)
    marker.write_text(wanted)
    return True

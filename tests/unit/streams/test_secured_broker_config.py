"""The secured broker's configuration, ACL plan and README commands (no broker needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.broker import KAFKA_DEPLOY_DIR, LocalBroker, _write_config
from streams.cli import main
from streams.kafka_acls import INPUT_TOPICS, Principals, acl_plan, cluster_commands
from streams.secured_broker import credentials, format_args, role_env, write_env_files
from streams.settings import REPO_ROOT


def _properties(text: str) -> dict[str, str]:
    """Java properties, the last assignment of a key winning (as ``Properties.load`` does)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture
def broker(tmp_path: Path) -> LocalBroker:
    return LocalBroker(home=tmp_path, port=39992, controller_port=39993, secured=True)


def test_secured_config_has_no_plaintext_listener_and_denies_by_default(broker: LocalBroker) -> None:
    _write_config(broker)
    text = broker.config_file.read_text()
    conf = _properties(text)
    assert not [f"{k}={v}" for k, v in conf.items() if "${" in v]
    assert conf["listeners"] == "SASL_PLAINTEXT://127.0.0.1:39992,CONTROLLER://127.0.0.1:39993"
    assert set(conf["listener.security.protocol.map"].replace(",", ":").split(":")) == {
        "SASL_PLAINTEXT", "CONTROLLER"}
    assert conf["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert conf["allow.everyone.if.no.acl.found"] == "false"
    assert conf["super.users"] == "User:mevrisk-admin;User:controller"
    assert conf["log.dirs"] == str(broker.secured_dir / "data")
    assert credentials(broker).admin in conf["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert stat.S_IMODE(broker.config_file.stat().st_mode) == 0o600


def test_the_plaintext_config_is_unchanged(tmp_path: Path) -> None:
    plain = LocalBroker(home=tmp_path, port=39990, controller_port=39991)
    _write_config(plain)
    template = (KAFKA_DEPLOY_DIR / "server.properties").read_text()
    assert plain.config_file.read_text() == (template.replace("${PORT}", "39990")
                                             .replace("${CONTROLLER_PORT}", "39991")
                                             .replace("${DATA_DIR}", str(tmp_path / "data-39990")))


def test_credentials_are_random_stable_and_private(broker: LocalBroker, tmp_path: Path) -> None:
    first = credentials(broker)
    assert credentials(broker) == first
    assert len({first.admin, first.worker, first.bot, first.controller}) == 4
    other = LocalBroker(home=tmp_path / "other", port=39994, controller_port=39995, secured=True)
    assert credentials(other) != first
    for path in write_env_files(broker).values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((broker.secured_dir / "credentials.json").stat().st_mode) == 0o600
    scram = f"SCRAM-SHA-512=[name=mevrisk-admin,password={first.admin}]"
    assert format_args(broker) == ["--add-scram", scram]
    assert role_env(broker, "bot")["MEVRISK_KAFKA_SASL_USERNAME"] == "mevrisk-bot"


def test_lost_credentials_beside_existing_data_are_an_error(broker: LocalBroker) -> None:
    broker.data_dir.mkdir(parents=True)
    from streams.broker import BrokerError

    with pytest.raises(BrokerError, match="passwords are lost"):
        credentials(broker)


def test_bots_write_only_the_inputs_and_read_only_controls() -> None:
    plan = acl_plan("p.", "p.app", Principals(), "p.bot")
    bot = [rule for rule in plan if rule.principal == "mevrisk-bot"]
    writes = {t for rule in bot if "Write" in rule.operations for t in rule.topics}
    reads = {t for rule in bot if "Read" in rule.operations for t in rule.topics}
    assert writes == {f"p.{t}" for t in INPUT_TOPICS}
    assert reads == {"p.risk.controls"}
    assert all(rule.pattern == "literal" for rule in bot)
    assert {g for rule in bot for g in rule.groups} == {"p.bot"}
    worker = [rule for rule in plan if rule.principal == "mevrisk-worker"]
    owned = next(rule for rule in worker if rule.pattern == "prefixed")
    assert set(owned.topics) == {"p.risk.", "p.app-"} and "Write" in owned.operations
    assert {g for rule in worker for g in rule.groups} == {"p.app"}


def test_acl_arguments_are_kafka_acls_syntax() -> None:
    rule = acl_plan("", "mevrisk", Principals(), "mevrisk-bot")[2]
    assert rule.args() == [
        "--add", "--allow-principal", "User:mevrisk-bot", "--operation", "Write", "--operation", "Describe",
        "--topic", "mev.market.ticks", "--topic", "mev.positions", "--topic", "mev.strategy.stats",
        "--resource-pattern-type", "literal",
    ]


def test_the_readme_shows_the_commands_mevrisk_broker_acls_prints(capsys: pytest.CaptureFixture[str]
                                                                   ) -> None:
    expected = cluster_commands("broker1:9096", acl_plan("", "mevrisk", Principals(), "mevrisk-bot"),
                                Principals())
    assert main(["broker", "acls", "--bootstrap", "broker1:9096"]) == 0
    assert capsys.readouterr().out == expected
    assert expected in (REPO_ROOT / "README.md").read_text(), "README: paste `mevrisk broker acls ...`"

"""Every Kafka client takes its credentials from one place (``streams.kafka_clients``)."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from streams.kafka_clients import faust_credentials, security_kwargs
from streams.settings import REPO_ROOT, Settings

CONSTRUCTORS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
OWN_CREDENTIALS = {
    "streams/kafka_clients.py": "the one place that builds clients",
    "streams/broker.py": "probes a given local broker with the credentials it is given",
}


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_plaintext_by_default_adds_nothing() -> None:
    settings = _settings()
    assert settings.kafka_protocol == "PLAINTEXT"
    assert security_kwargs(settings) == {}
    assert faust_credentials(settings) is None


def test_a_user_name_means_sasl_scram_over_plaintext() -> None:
    settings = _settings(kafka_sasl_username="mevrisk-worker", kafka_sasl_password="s3cret-s3cret")
    assert security_kwargs(settings) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "mevrisk-worker", "sasl_plain_password": "s3cret-s3cret",
    }
    assert "s3cret" not in repr(settings)


def test_the_faust_app_connects_exactly_like_the_other_clients() -> None:
    settings = _settings(kafka_sasl_username="w", kafka_sasl_password="p",
                         kafka_sasl_mechanism="SCRAM-SHA-256")
    faust_kwargs = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert {k: v for k, v in faust_kwargs.items() if v is not None} == security_kwargs(settings)


def test_sasl_ssl_verifies_the_brokers_certificates() -> None:
    settings = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="w", kafka_sasl_password="p")
    kwargs = security_kwargs(settings)
    context = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert credentials_to_aiokafka_auth(faust_credentials(settings))["security_protocol"] == "SASL_SSL"


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "needs MEVRISK_KAFKA_SASL_USERNAME"),
    ({"kafka_sasl_username": "w"}, "needs MEVRISK_KAFKA_SASL_USERNAME and MEVRISK_KAFKA_SASL_PASSWORD"),
    ({"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_username": "w", "kafka_sasl_password": "p"},
     "would send no credentials"),
])
def test_incomplete_credentials_are_a_clear_error(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**values)


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEVRISK_KAFKA_SASL_USERNAME", "mevrisk-bot")
    monkeypatch.setenv("MEVRISK_KAFKA_SASL_PASSWORD", "from-env")
    monkeypatch.setenv("MEVRISK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    kwargs = security_kwargs(Settings())
    assert kwargs["sasl_plain_username"] == "mevrisk-bot" and kwargs["sasl_plain_password"] == "from-env"


def _direct_constructions(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and ((isinstance(node.func, ast.Name) and node.func.id in CONSTRUCTORS)
                 or (isinstance(node.func, ast.Attribute) and node.func.attr in CONSTRUCTORS))]


def test_no_module_of_streams_builds_a_kafka_client_without_the_credentials() -> None:
    found = {}
    for path in sorted((REPO_ROOT / "streams").rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        lines = _direct_constructions(path)
        if lines and relative not in OWN_CREDENTIALS:
            found[relative] = lines
    assert not found, f"use streams.kafka_clients.consumer/producer/admin instead: {found}"


def test_the_scan_sees_a_direct_construction(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import aiokafka\nc = aiokafka.AIOKafkaConsumer('t')\np = AIOKafkaProducer()\n")
    assert _direct_constructions(module) == [2, 3]


def test_refused_credentials_and_denied_requests_are_one_clear_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    from streams import commands

    settings = _settings(kafka_sasl_username="mevrisk-bot", kafka_sasl_password="p")
    monkeypatch.setattr(commands, "get_settings", lambda: settings)

    def refused(_: argparse.Namespace) -> int:
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9192)]")

    def denied(_: argparse.Namespace) -> int:
        raise TopicAuthorizationFailedError("creating topic risk.dlq: not allowed")

    assert commands.run_guarded(refused, argparse.Namespace()) == 2
    assert "as User:mevrisk-bot" in capsys.readouterr().err
    assert commands.run_guarded(denied, argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Kafka denied this to User:mevrisk-bot") and err.count("\n") == 1

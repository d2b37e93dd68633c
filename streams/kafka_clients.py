"""Every Kafka client of the process, built in one place with the credentials of ``Settings``.

The worker's Faust app (``broker_credentials``), its aiokafka consumers, producers and admin
clients, ``mevrisk topics create``, the simulator and the CLI readers all connect through here, so
one set of ``MEVRISK_KAFKA_*`` variables (protocol, SASL mechanism, user name, password, CA file)
secures them all. ``tests/unit/streams/test_kafka_clients.py`` fails when a module of ``streams/``
constructs an aiokafka client itself.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.settings import Settings, get_settings


def security_kwargs(settings: Settings | None = None) -> dict[str, Any]:
    """The aiokafka keyword arguments for ``settings``' security protocol ({} for PLAINTEXT)."""
    settings = settings or get_settings()
    protocol = settings.kafka_protocol
    if protocol == "PLAINTEXT":
        return {}
    password = settings.kafka_sasl_password
    kwargs: dict[str, Any] = {
        "security_protocol": protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value() if password is not None else None,
    }
    if protocol == "SASL_SSL":
        kwargs["ssl_context"] = ssl_context(settings)
    return kwargs


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context: the brokers' certificates against the CA file or the system CAs."""
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile is not None else None
    return ssl.create_default_context(cafile=cafile)


def faust_credentials(settings: Settings | None = None) -> Any:
    """``faust.App(broker_credentials=...)`` for ``settings``: None for PLAINTEXT."""
    settings = settings or get_settings()
    kwargs = security_kwargs(settings)
    if not kwargs:
        return None
    import faust

    return faust.SASLCredentials(
        username=kwargs["sasl_plain_username"], password=kwargs["sasl_plain_password"],
        mechanism=kwargs["sasl_mechanism"], ssl_context=kwargs.get("ssl_context"),
    )


def consumer(*topics: str, bootstrap_servers: str, **kwargs: Any) -> AIOKafkaConsumer:
    """An ``AIOKafkaConsumer`` (not started) with this process's credentials."""
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap_servers, **security_kwargs(), **kwargs)


def producer(*, bootstrap_servers: str, **kwargs: Any) -> AIOKafkaProducer:
    """An ``AIOKafkaProducer`` (not started) with this process's credentials."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **security_kwargs(), **kwargs)


def admin(*, bootstrap_servers: str, **kwargs: Any) -> AIOKafkaAdminClient:
    """An ``AIOKafkaAdminClient`` (not started) with this process's credentials."""
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **security_kwargs(), **kwargs)

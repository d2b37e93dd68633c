"""Shared fixtures. The Kafka broker is real: KAFKA_BOOTSTRAP_SERVERS if set, else a testcontainers
KafkaContainer where a Docker engine answers, else the project's local broker (deploy/kafka)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

TEST_BROKER_PORT = int(os.environ.get("MEVRISK_TEST_BROKER_PORT", "19092"))


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    from streams.broker import LocalBroker, start, stop

    broker = LocalBroker(port=TEST_BROKER_PORT, controller_port=TEST_BROKER_PORT + 1)
    stop(broker)
    import shutil

    shutil.rmtree(broker.data_dir, ignore_errors=True)
    start(broker)
    try:
        yield broker.bootstrap
    finally:
        stop(broker)
        shutil.rmtree(broker.data_dir, ignore_errors=True)

"""Issue 12 item 4: the secured broker confines each principal to its role (real Kafka, SASL/SCRAM, ACLs).

A secured local broker (``mevrisk broker start --secured``'s code path) runs on
``MEVRISK_TEST_SECURED_BROKER_PORT`` (default: the test broker's port + 2, beside the plaintext one);
its users and ACLs are set with Kafka's own ``ConfigCommand`` and ``AclCommand`` from the plan the
README prints (``streams.kafka_acls``). On today's plaintext broker any client may write any topic;
here a bot may write only the three input topics and read ``risk.controls``, and a worker with the
worker principal still consumes the input and publishes snapshots.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from agents.alerts.controls import Control, control_id
from streams.broker import LocalBroker, accepts_metadata, start, stop
from streams.kafka_acls import INPUT_TOPICS, Principals, acl_plan
from streams.secured_broker import Role, role_client_kwargs, role_env, set_up
from tests.conftest import TEST_BROKER_PORT
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    Env,
    run,
    start_worker,
    wait_until,
    worker_watch,
)

pytestmark = pytest.mark.integration

SECURED_PORT = int(os.environ.get("MEVRISK_TEST_SECURED_BROKER_PORT", str(TEST_BROKER_PORT + 2)))
FORBIDDEN_TO_BOTS = ("risk.audit", "risk.models", "risk.controls")


class Cluster:
    """The secured broker and this module's slice of it: a topic prefix, an app id, a bot group."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker
        self.prefix = f"s{uuid.uuid4().hex[:10]}."
        self.app_id = f"{self.prefix}app"  # what Env.environ gives the worker (MEVRISK_APP_ID)
        self.bot_group = f"{self.prefix}bot"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def kwargs(self, role: Role) -> dict[str, Any]:
        return {"bootstrap_servers": self.broker.bootstrap, **role_client_kwargs(self.broker, role)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh secured broker with the users and the ACLs of this module's prefix and app id."""
    broker = LocalBroker(port=SECURED_PORT, controller_port=SECURED_PORT + 1, secured=True)
    stop(broker)
    shutil.rmtree(broker.secured_dir, ignore_errors=True)
    try:
        start(broker, wait_s=180)
        made = Cluster(broker)
        set_up(broker, acl_plan(made.prefix, made.app_id, Principals(), made.bot_group))
        yield made
    finally:
        stop(broker)
        shutil.rmtree(broker.secured_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def topics_created(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """``mevrisk topics create`` as the admin, with credentials from the environment."""
    admin = Env(bootstrap=cluster.broker.bootstrap, prefix=cluster.prefix,
                tmp=tmp_path_factory.mktemp("admin"), extra=role_env(cluster.broker, "admin"))
    out = admin.mevrisk("topics", "create").stdout
    assert f"{cluster.topic('risk.audit')}\tcreated" in out, out
    return cluster


@pytest.fixture
def env(topics_created: Cluster, tmp_path: Path) -> Env:
    """The integration fixtures' ``Env`` on the secured broker; processes run as the admin unless
    a test overrides the ``MEVRISK_KAFKA_*`` variables with another role's."""
    return Env(bootstrap=topics_created.broker.bootstrap, prefix=topics_created.prefix, tmp=tmp_path,
               extra=role_env(topics_created.broker, "admin"))


async def _send(cluster: Cluster, role: Role, topic: str, value: bytes, key: bytes = b"k") -> int:
    """Produce one record as ``role`` (acks=all); its offset, or the client's error."""
    producer = AIOKafkaProducer(**cluster.kwargs(role), acks="all", request_timeout_ms=20_000)
    await producer.start()
    try:
        meta = await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), 60)
        return int(meta.offset)
    finally:
        await producer.stop()


async def _read_group(cluster: Cluster, role: Role, topic: str, group: str, count: int,
                      timeout: float) -> list[bytes]:
    """Read ``count`` values of ``topic`` from the start as ``role`` in ``group``, committing them."""
    consumer = AIOKafkaConsumer(topic, **cluster.kwargs(role), group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            out.extend(r.value for records in batch.values() for r in records if r.value is not None)
        if out:
            await consumer.commit()
    finally:
        await consumer.stop()
    return out


async def _read_all(cluster: Cluster, role: Role, topic: str, timeout: float) -> list[dict[str, Any]]:
    """Every JSON value of ``topic`` so far, read as ``role`` without a group."""
    consumer = AIOKafkaConsumer(topic, **cluster.kwargs(role), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=4_194_304)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and out:
                break
            out.extend(orjson.loads(r.value) for records in batch.values() for r in records if r.value)
    finally:
        await consumer.stop()
    return out


def _tick(ts_ms: int) -> bytes:
    return orjson.dumps({"kind": "price", "source": "price-oracle", "ts_ms": ts_ms, "asset": "ETH",
                         "price_usd": 3000.0})


def test_no_client_gets_in_without_credentials(cluster: Cluster) -> None:
    assert accepts_metadata(cluster.broker.bootstrap, **role_client_kwargs(cluster.broker, "bot"))
    assert not accepts_metadata(cluster.broker.bootstrap, timeout_s=5.0)  # plaintext, anonymous


@pytest.mark.parametrize("name", FORBIDDEN_TO_BOTS)
def test_a_bot_cannot_write_the_engines_topics(topics_created: Cluster, name: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        run(_send(topics_created, "bot", topics_created.topic(name), b'{"forged": true}'))


def test_a_bot_writes_the_inputs_and_reads_controls_in_its_group(topics_created: Cluster) -> None:
    cluster = topics_created
    now = int(time.time() * 1000)
    for name in INPUT_TOPICS:
        key = b"ETH" if name == "mev.market.ticks" else b"k"
        assert run(_send(cluster, "bot", cluster.topic(name), _tick(now), key=key)) >= 0
    # the worker writes risk.controls; a bot reads it in its own group (a harmless RESUME of a test scope)
    scope = "strategy:secured-broker-test"
    control = orjson.dumps(Control(control_id(scope, "RESUME", "test", now), scope, "RESUME", "ACTIVE",
                                   "secured broker test", "test", now).to_dict())
    run(_send(cluster, "worker", cluster.topic("risk.controls"), control, key=scope.encode()))
    got = run(_read_group(cluster, "bot", cluster.topic("risk.controls"), cluster.bot_group, 1, timeout=60))
    assert control in got
    with pytest.raises(GroupAuthorizationFailedError):  # the worker's group is not the bot's
        run(_read_group(cluster, "bot", cluster.topic("risk.controls"), cluster.app_id, 1, timeout=20))


def test_a_worker_with_the_worker_principal_still_works(env: Env, topics_created: Cluster,
                                                        start_worker) -> None:  # noqa: F811 - fixture
    cluster = topics_created
    worker = start_worker(MEVRISK_BAR_MS="1000", **role_env(cluster.broker, "worker"))
    # the simulator runs as a bot: it publishes the three input topics and follows risk.controls
    env.mevrisk("simulate", "--seed", "5", "--rate", "100", "--duration", "30", "--pace", "fast",
                timeout=300, **role_env(cluster.broker, "bot"))
    snapshots = wait_until(lambda: run(_read_all(cluster, "admin", cluster.topic("risk.snapshots"), 10)),
                           180, "the worker to publish risk snapshots")
    assert {s["portfolio"] for s in snapshots}, snapshots[:3]
    wait_until(lambda: worker.metric("mevrisk_events_in_total", topic="mev.positions") > 0, 60,
               "the worker to count positions it consumed")
    worker.assert_healthy()

"""Idempotent topic creation (``mevrisk topics create``) with aiokafka's admin client."""

from __future__ import annotations

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

from streams import kafka_clients

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


async def create_topics(bootstrap: str, specs, partitions: int, replication: int) -> dict[str, str]:
    """Create every topic in ``specs`` that does not exist; return name -> created|exists."""
    admin = kafka_clients.admin(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions or partitions,
                replication_factor=replication,
                topic_configs=s.config(),
            )
            for s in specs
            if s.name not in existing
        ]
        outcome = {s.name: "exists" for s in specs if s.name in existing}
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, *_ in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    if code == TopicAuthorizationFailedError.errno:
                        raise TopicAuthorizationFailedError(f"creating topic {name}: not allowed")
                    raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
                outcome[name] = "created" if code == 0 else "exists"
        return outcome
    finally:
        await admin.close()

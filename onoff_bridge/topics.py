"""The topics of the design with their partitions and cleanup policy, and their creation.

Services do not create topics implicitly (the local broker has
auto.create.topics.enable=false, as a production cluster should): `make run`
and `onoff-bridge topics create` do it, idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from onoff_bridge.settings import TopicNames

_LONG_RETENTION_MS = str(365 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(topics: TopicNames, partitions: int = 6) -> list[TopicSpec]:
    delete_long = {"cleanup.policy": "delete", "retention.ms": _LONG_RETENTION_MS}
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(topics.cdr_raw, partitions, delete_long),
        TopicSpec(topics.sms_raw, partitions, {"cleanup.policy": "delete"}),
        TopicSpec(topics.deadletter, 1, delete_long),
        TopicSpec(topics.calls, partitions, compact),
        TopicSpec(topics.recordings, partitions, compact),
        TopicSpec(topics.user_call_metrics, partitions, compact),
    ]


def ensure_topics(
    bootstrap_servers: str, specs: list[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Creates the topics that do not exist yet; returns the names it created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, replication_factor, config=s.config) for s in specs],
        operation_timeout=30,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        else:
            created.append(name)
    return created


def topic_partitions(bootstrap_servers: str, topic: str, timeout_s: float = 15.0) -> int:
    """How many partitions `topic` has: a Faust table fed by it must have as many."""
    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(
        topic, timeout=timeout_s
    )
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise RuntimeError(f"topic {topic} must exist before the worker starts")
    return len(found.partitions)

"""`onoff-bridge topics apply`: makes the cluster hold every topic as its spec says.

Creates what is missing (partitions, replicas, cleanup policy, retention,
`min.insync.replicas`), sets the retention and `min.insync.replicas` of topics
that differ, and reports what it cannot or must not fix: a cleanup policy
other than the spec's (switching it on a live topic changes what the topic
keeps), fewer or more partitions than asked (adding partitions moves keys
between partitions and breaks co-partitioned tables; lowering is impossible),
another replication factor (that needs a partition reassignment). Applying
twice changes nothing the second time. Services never create topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# Defined in private modules that the package does not re-export for type checkers.
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from schemas.settings import TopicNames
from schemas.topics import TopicSpec, describe_topics
from schemas.topics import topic_partitions as topic_partitions

__all__ = ["ApplyReport", "TopicSpec", "apply_topics", "ensure_topics", "topic_specs"]

_LONG_RETENTION_MS = str(365 * 24 * 3600 * 1000)
# Settings `apply` sets on an existing topic when they differ; the others are drift.
_ALTERABLE = ("retention.ms", "min.insync.replicas")


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    # "onoff.calls: min.insync.replicas 1 -> 2"
    changed: list[str] = field(default_factory=list)
    # What apply cannot or will not fix, one line each.
    drift: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def apply_topics(
    config: Mapping[str, str], specs: list[TopicSpec], timeout_s: float = 30.0
) -> ApplyReport:
    report = ApplyReport()
    admin = AdminClient(dict(config))
    states = describe_topics(config, [s.name for s in specs], timeout_s)
    missing = [s for s in specs if s.name not in states]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s * 2)
            except KafkaException as exc:
                # Another `apply` (an init container of each replica) got there first.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            report.created.append(name)
    alterations: dict[str, list[tuple[str, str, str]]] = {}
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            continue
        before = len(report.drift)
        if state.cleanup_policy != spec.cleanup_policy:
            report.drift.append(
                f"{spec.name}: cleanup.policy is {state.cleanup_policy}, the spec says "
                f"{spec.cleanup_policy} (not changed: recreate the topic, or change it "
                "deliberately with kafka-configs)"
            )
        if state.partitions < spec.partitions:
            report.drift.append(
                f"{spec.name}: {state.partitions} partitions, the spec says {spec.partitions} "
                "(not added: new partitions move keys away from their state; add them "
                "deliberately with all workers stopped)"
            )
        elif state.partitions > spec.partitions:
            report.drift.append(
                f"{spec.name}: {state.partitions} partitions, more than the {spec.partitions} "
                "the spec says (a partition count is never lowered)"
            )
        if state.replication_factor != spec.replication_factor:
            report.drift.append(
                f"{spec.name}: replication factor {state.replication_factor}, the spec says "
                f"{spec.replication_factor} (needs a partition reassignment)"
            )
        for key in _ALTERABLE:
            wanted = spec.config.get(key)
            if wanted is not None and state.config.get(key) != wanted:
                alterations.setdefault(spec.name, []).append(
                    (key, state.config.get(key, "unset"), wanted)
                )
        if spec.name not in alterations and len(report.drift) == before:
            report.unchanged.append(spec.name)
    if alterations:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(key, new, incremental_operation=AlterConfigOpType.SET)
                    for key, _, new in changes
                ],
            )
            for name, changes in alterations.items()
        ]
        for resource, future in admin.incremental_alter_configs(resources).items():
            future.result(timeout=timeout_s)
            for key, old, new in alterations[resource.name]:
                report.changed.append(f"{resource.name}: {key} {old} -> {new}")
    return report


def topic_specs(topics: TopicNames, partitions: int = 6) -> list[TopicSpec]:
    """The design's topics with one broker's layout, for tests and benchmarks."""
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
    connection: str | Mapping[str, str],
    specs: list[TopicSpec],
    replication_factor: int | None = None,
) -> list[str]:
    """Creates the topics that do not exist yet; returns the names it created."""
    config = {"bootstrap.servers": connection} if isinstance(connection, str) else connection
    if replication_factor is not None:
        specs = [
            TopicSpec(s.name, s.partitions, s.config, replication_factor, s.group, s.purpose)
            for s in specs
        ]
    states = describe_topics(config, [s.name for s in specs])
    return apply_topics(config, [s for s in specs if s.name not in states]).created

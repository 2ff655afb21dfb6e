"""Topics as code: what every topic of the design looks like, and what a cluster holds.

`TopicSpec` is the wanted state (partitions, replicas, cleanup policy,
retention, `min.insync.replicas`); `describe_topics` reads the actual state;
`layout_problems` compares them the way a worker must before it starts.
`onoff-bridge topics apply` (in `onoff_bridge.topics`) makes the actual state
match; the processors add the topics Faust uses of its own
(`processors.topology`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# confluent-kafka defines these in private modules that its package does not re-export
# for type checkers; the public names are the same classes.
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from schemas.errors import KafkaUnavailableError
from schemas.settings import BridgeSettings

DAY_MS = 24 * 3600 * 1000
# The settings `topics apply` manages on every topic; others are left as they are.
MANAGED_CONFIGS = ("cleanup.policy", "retention.ms", "min.insync.replicas")
# onoff.cdr.raw's partitions decide onoff.calls' (dedupe's table changelog is written
# to the partition of the delivery), which decide the recordings and metrics tables'.
CALLS_GROUP = "calls"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str]
    replication_factor: int = 1
    # Topics of one group must have the same partition count: Faust writes a table's
    # changelog to the partition of the source record being handled.
    group: str | None = None
    # Who reads or writes it, for the messages: "dedupe", "faust leader election", ...
    purpose: str = ""

    @property
    def cleanup_policy(self) -> str:
        return self.config.get("cleanup.policy", "delete")


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def cleanup_policy(self) -> str:
        return self.config.get("cleanup.policy", "delete")


def topic_config(
    settings: BridgeSettings, cleanup: str, retention_days: float | None = None
) -> dict[str, str]:
    config = {
        "cleanup.policy": cleanup,
        "min.insync.replicas": str(settings.topic_min_insync_replicas),
    }
    if retention_days is not None:
        config["retention.ms"] = str(int(retention_days * DAY_MS))
    return config


def design_topics(settings: BridgeSettings) -> list[TopicSpec]:
    """The six topics of ARCHITECTURE.md, laid out from the settings."""
    topics = settings.topics
    partitions = settings.topic_partitions
    rf = settings.topic_replication_factor
    raw = topic_config(settings, "delete", settings.topic_raw_retention_days)
    compact = topic_config(settings, "compact")
    sms = topic_config(settings, "delete", settings.topic_sms_retention_days)
    return [
        TopicSpec(topics.cdr_raw, partitions, raw, rf, CALLS_GROUP, "ingress -> dedupe"),
        TopicSpec(topics.sms_raw, partitions, sms, rf, purpose="ingress"),
        TopicSpec(topics.deadletter, 1, raw, rf, purpose="ingress and processors"),
        TopicSpec(topics.calls, partitions, compact, rf, CALLS_GROUP, "dedupe's table and output"),
        TopicSpec(topics.recordings, partitions, compact, rf, purpose="recordings output"),
        TopicSpec(topics.user_call_metrics, partitions, compact, rf, purpose="metrics output"),
    ]


def describe_topics(
    config: Mapping[str, str], names: Iterable[str], timeout_s: float = 15.0
) -> dict[str, TopicState]:
    """The actual state of each topic that exists; absent names are missing."""
    admin = AdminClient(dict(config))
    wanted = sorted(set(names))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"listing topics failed: {exc.args[0].str()}") from exc
    present = [
        name
        for name in wanted
        if name in metadata.topics
        and metadata.topics[name].error is None
        and metadata.topics[name].partitions
    ]
    configs: dict[str, dict[str, str]] = {name: {} for name in present}
    if present:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present])
        for resource, future in futures.items():
            try:
                entries = future.result(timeout=timeout_s)
            except KafkaException as exc:
                raise KafkaUnavailableError(
                    f"describing {resource.name} failed: {exc.args[0].str()}"
                ) from exc
            configs[resource.name] = {
                key: str(entries[key].value) for key in MANAGED_CONFIGS if key in entries
            }
    states = {}
    for name in present:
        partitions = metadata.topics[name].partitions
        states[name] = TopicState(
            name, len(partitions), len(partitions[min(partitions)].replicas), configs[name]
        )
    return states


def layout_problems(specs: Iterable[TopicSpec], states: Mapping[str, TopicState]) -> list[str]:
    """What would make a worker misbehave: a missing topic, the wrong cleanup policy,
    or co-partitioned topics whose partition counts disagree. One line each."""
    problems = []
    groups: dict[str, dict[str, int]] = {}
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            problems.append(f"topic {spec.name} ({spec.purpose}) does not exist")
            continue
        if state.cleanup_policy != spec.cleanup_policy:
            problems.append(
                f"topic {spec.name} has cleanup.policy={state.cleanup_policy}, "
                f"needs {spec.cleanup_policy}"
            )
        if spec.group is not None:
            groups.setdefault(spec.group, {})[spec.name] = state.partitions
    for members in groups.values():
        if len(set(members.values())) > 1:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(members.items()))
            problems.append(f"partitions disagree between co-partitioned topics: {counts}")
    return problems


def topic_partitions(config: Mapping[str, str], topic: str, timeout_s: float = 15.0) -> int:
    """How many partitions `topic` has: a Faust table fed by it must have as many."""
    state = describe_topics(config, [topic], timeout_s).get(topic)
    if state is None:
        raise KafkaUnavailableError(
            f"topic {topic} must exist before the worker starts; run `onoff-bridge topics apply`"
        )
    return state.partitions

"""Every topic each processor's Faust app reads, writes or keeps a table in, Faust's own included.

Faust would declare its internal topics itself (the leader-election topic, the
table changelogs, the metrics contributions topic) with replication factor 1
and its own defaults; the app is built with `topic_allow_declare=False`, so
these specs are the only place they are made (`onoff-bridge topics apply`) and
the worker checks them before it starts (`processors.preflight`).
The names must match what the processors pass to `app.topic` and `app.Table`.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.settings import ProcessorSettings
from schemas.topics import CALLS_GROUP, TopicSpec, design_topics, topic_config

NAMES = ("dedupe", "recordings", "metrics")
# The metrics contributions topic and the windows table, keyed by user.
USERS_GROUP = "metrics-users"


def app_id(settings: ProcessorSettings, names: Sequence[str]) -> str:
    """Faust app id and consumer group: `<prefix>-<processors>`, e.g. onoff-bridge-dedupe."""
    return f"{settings.app_id_prefix}-{'-'.join(names)}"


def contributions_topic(app_id: str) -> str:
    """The metrics' internal topic from its calls agent to its windows agent."""
    return f"{app_id}-metrics-contributions"


def processor_topics(settings: ProcessorSettings, names: Sequence[str]) -> list[TopicSpec]:
    """The topics one Faust app (the processors `names` together) needs, with their layout."""
    design = {spec.name: spec for spec in design_topics(settings)}
    topics = settings.topics
    rf = settings.topic_replication_factor
    partitions = settings.topic_partitions
    compact = topic_config(settings, "compact")
    prefix = app_id(settings, names)
    wanted: dict[str, TopicSpec] = {}

    def use(*specs: TopicSpec) -> None:
        wanted.update({spec.name: spec for spec in specs})

    use(
        design[topics.deadletter],
        TopicSpec(
            f"{prefix}-__assignor-__leader",
            1,
            topic_config(settings, "delete", 1.0),
            rf,
            purpose=f"faust leader election of {prefix}",
        ),
    )
    if "dedupe" in names:
        use(design[topics.cdr_raw], design[topics.calls])
    if "recordings" in names:
        use(
            design[topics.calls],
            design[topics.recordings],
            TopicSpec(
                f"{prefix}-recordings-handled-changelog",
                partitions,
                compact,
                rf,
                CALLS_GROUP,
                "recordings table changelog",
            ),
        )
    if "metrics" in names:
        metrics = settings.metrics
        use(
            design[topics.calls],
            design[topics.user_call_metrics],
            TopicSpec(
                f"{prefix}-metrics-calls-changelog",
                partitions,
                compact,
                rf,
                CALLS_GROUP,
                "metrics calls table changelog",
            ),
            # Contributions wait here until the windows agent folds them in; a worker that
            # is down for a while must still find them, so they are kept as long as windows.
            TopicSpec(
                contributions_topic(prefix),
                metrics.partitions,
                topic_config(settings, "delete", metrics.retention_days),
                rf,
                USERS_GROUP,
                "metrics contributions (repartitioned by user)",
            ),
            TopicSpec(
                f"{prefix}-metrics-windows-changelog",
                metrics.partitions,
                compact,
                rf,
                USERS_GROUP,
                "metrics windows table changelog",
            ),
        )
    return list(wanted.values())


def all_topics(settings: ProcessorSettings) -> list[TopicSpec]:
    """Every topic of the system: the design's and each processor's own (`worker all`)."""
    wanted = {spec.name: spec for spec in design_topics(settings)}
    for name in NAMES:
        wanted.update({spec.name: spec for spec in processor_topics(settings, [name])})
    return list(wanted.values())

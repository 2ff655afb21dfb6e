"""`topics apply` on an empty cluster, again, and over a wrongly made onoff.calls."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from onoff_bridge.localstack.secure import SecureEndpoints
from schemas.topics import describe_topics
from tests.cluster.helpers import Layout, cli, client_env, topic_names_of, wait_until


def test_apply_makes_every_topic_once_and_reports_what_it_cannot_fix(
    cluster: SecureEndpoints, layout: Layout, tmp_path: Path
) -> None:
    env = client_env(cluster, layout, tmp_path)
    config = cluster.kafka_config()
    names = topic_names_of(layout)

    first = cli("topics", "apply", env=env)
    assert first.returncode == 0, first.stderr
    assert sorted(line.split()[1] for line in first.stdout.splitlines()) == sorted(names)
    states = describe_topics(config, names)
    assert set(states) == set(names)
    for state in states.values():
        assert state.replication_factor == 3
        assert state.config["min.insync.replicas"] == "2"
    calls = states[layout.topics.calls]
    assert (calls.partitions, calls.cleanup_policy) == (3, "compact")
    assert states[layout.topics.cdr_raw].cleanup_policy == "delete"
    assert states[f"{layout.app_id_prefix}-metrics-metrics-windows-changelog"].cleanup_policy == (
        "compact"
    )

    again = cli("topics", "apply", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"no change ({len(names)} topics checked)"

    # A retention changed by hand is put back; nothing else moves.
    retention = cli("topics", "apply", env=env | {"ONOFF_BRIDGE_TOPIC_RAW_RETENTION_DAYS": "30"})
    assert retention.returncode == 0, retention.stderr
    assert f"changed    {layout.topics.cdr_raw}: retention.ms 31536000000 -> 2592000000" in (
        retention.stdout
    )

    # onoff.calls as Faust would have made it itself: 8 partitions, delete policy.
    admin = AdminClient(dict[str, str | int | float | bool](config))
    admin.delete_topics([layout.topics.calls])[layout.topics.calls].result(timeout=60)
    assert wait_until(lambda: layout.topics.calls not in admin.list_topics(timeout=10).topics, 60)
    wrong = NewTopic(layout.topics.calls, 8, 3, config={"cleanup.policy": "delete"})

    def recreated() -> bool:
        try:
            admin.create_topics([wrong])[layout.topics.calls].result(timeout=30)
        except Exception:  # deletion still settling on a broker
            return False
        return True

    assert wait_until(recreated, 60)
    drift = cli("topics", "apply", env=env)
    assert drift.returncode == 2, drift.stdout + drift.stderr
    lines = [line for line in drift.stdout.splitlines() if line.startswith("DRIFT")]
    calls_name = layout.topics.calls
    assert any(f"{calls_name}: cleanup.policy is delete, the spec says compact" in x for x in lines)
    assert any(f"{calls_name}: 8 partitions, more than the 3" in x for x in lines)
    assert describe_topics(config, [calls_name])[calls_name].partitions == 8  # never lowered

    refused = cli("worker", "dedupe", env=env)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refused.stderr
    assert f"topic {calls_name} has cleanup.policy=delete, needs compact" in errors[0]
    assert "partitions disagree between co-partitioned topics" in errors[0]
    assert "run `onoff-bridge topics apply`" in errors[0]

    leader = f"{layout.app_id_prefix}-dedupe-__assignor-__leader"
    admin.delete_topics([leader])[leader].result(timeout=60)
    assert wait_until(lambda: leader not in admin.list_topics(timeout=10).topics, 60)
    missing = cli("worker", "dedupe", env=env)
    assert missing.returncode == 1
    assert f"topic {layout.app_id_prefix}-dedupe-__assignor-__leader" in missing.stderr

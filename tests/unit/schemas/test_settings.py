from pathlib import Path

import pytest
from pydantic import ValidationError

from processors.settings import ProcessorSettings
from processors.topology import all_topics, processor_topics
from schemas.settings import BridgeSettings
from schemas.topics import TopicSpec, TopicState, layout_problems


def test_every_connection_setting_is_read_from_the_environment(monkeypatch) -> None:
    env = {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "ONOFF_BRIDGE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "ONOFF_BRIDGE_KAFKA__SASL_USERNAME": "bridge",
        "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD": "kafka-secret",
        "ONOFF_BRIDGE_KAFKA__SSL_CA_LOCATION": "/etc/ca.pem",
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": "https://registry:8081",
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER": "reader",
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": "registry-secret",
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_CA_LOCATION": "/etc/registry-ca.pem",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = BridgeSettings()
    assert settings.kafka_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "kafka-secret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    registry = settings.registry_connection()
    assert registry.client_config() == {
        "url": "https://registry:8081",
        "basic.auth.user.info": "reader:registry-secret",
        "ssl.ca.location": "/etc/registry-ca.pem",
    }
    assert registry.ca_location == Path("/etc/registry-ca.pem")
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "kafka-secret" not in shown and "registry-secret" not in shown


def test_sasl_without_a_password_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ONOFF_BRIDGE_KAFKA__SASL_USERNAME", "bridge")
    with pytest.raises(ValidationError, match="ONOFF_BRIDGE_KAFKA__SASL_PASSWORD"):
        BridgeSettings()


def test_min_insync_replicas_cannot_exceed_the_replicas() -> None:
    with pytest.raises(ValidationError, match="MIN_INSYNC_REPLICAS"):
        BridgeSettings(topic_replication_factor=2, topic_min_insync_replicas=3)


def test_faust_topics_are_named_as_the_processors_name_them() -> None:
    settings = ProcessorSettings(
        app_id_prefix="p", topic_replication_factor=3, topic_min_insync_replicas=2
    )
    names = {spec.name for spec in all_topics(settings)}
    assert {
        "p-dedupe-__assignor-__leader",
        "p-recordings-__assignor-__leader",
        "p-metrics-__assignor-__leader",
        "p-recordings-recordings-handled-changelog",
        "p-metrics-metrics-calls-changelog",
        "p-metrics-metrics-windows-changelog",
        "p-metrics-metrics-contributions",
        "onoff.cdr.raw",
        "onoff.sms.raw",
        "onoff.calls",
    } <= names
    for spec in all_topics(settings):
        assert spec.replication_factor == 3
        assert spec.config["min.insync.replicas"] == "2"
    calls = next(s for s in processor_topics(settings, ["dedupe"]) if s.name == "onoff.calls")
    assert calls.cleanup_policy == "compact"


def test_layout_problems_name_the_topic_and_what_is_wrong() -> None:
    specs = [
        TopicSpec("raw", 6, {"cleanup.policy": "delete"}, group="calls", purpose="in"),
        TopicSpec("calls", 6, {"cleanup.policy": "compact"}, group="calls", purpose="out"),
        TopicSpec("gone", 1, {"cleanup.policy": "delete"}, purpose="somewhere"),
    ]
    states = {
        "raw": TopicState("raw", 6, 1, {"cleanup.policy": "delete"}),
        "calls": TopicState("calls", 8, 1, {"cleanup.policy": "delete"}),
    }
    assert layout_problems(specs, states) == [
        "topic calls has cleanup.policy=delete, needs compact",
        "topic gone (somewhere) does not exist",
        "partitions disagree between co-partitioned topics: calls 8, raw 6",
    ]
    states["calls"] = TopicState("calls", 6, 1, {"cleanup.policy": "compact"})
    assert layout_problems(specs[:2], states) == []

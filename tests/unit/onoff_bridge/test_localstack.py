from __future__ import annotations

from pathlib import Path

import pytest

from onoff_bridge.localstack import LocalStack, StackSettings, ToolMissingError
from onoff_bridge.localstack.services import KafkaService
from onoff_bridge.localstack.toolchain import find_java, find_mvn


def test_env_file_merges_and_can_be_sourced(tmp_path: Path) -> None:
    stack = LocalStack(StackSettings(home=tmp_path), progress=lambda _: None)
    stack.write_env({"ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    stack.write_env({"ONOFF_BRIDGE_API_KEY": "k"})
    stack.write_env({"ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"})
    assert (tmp_path / "stack.env").read_text().splitlines() == [
        "export ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092",
        "export ONOFF_BRIDGE_API_KEY=k",
    ]


def test_endpoints_follow_the_configured_ports(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path, kafka_port=19092, registry_port=18081)
    endpoints = LocalStack(settings).endpoints()
    assert endpoints.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert endpoints.schema_registry_url == "http://127.0.0.1:18081/apis/ccompat/v7"


def test_missing_tools_give_one_line_errors() -> None:
    with pytest.raises(ToolMissingError, match="java not found") as java_error:
        find_java("no-such-java-binary")
    with pytest.raises(ToolMissingError, match="mvn not found") as mvn_error:
        find_mvn("no-such-mvn-binary")
    assert "\n" not in str(java_error.value) + str(mvn_error.value)


def test_kafka_runs_kraft_on_loopback_with_a_capped_heap(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path, kafka_port=19092, kafka_controller_port=19093)
    command = KafkaService(settings, "java", tmp_path / "libs").command()
    assert "-Xmx512m" in command
    assert command[-2] == "kafka.Kafka"

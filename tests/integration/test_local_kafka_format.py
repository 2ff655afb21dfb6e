"""The local stack formats Kafka's storage whatever random cluster id it draws."""

from __future__ import annotations

from pathlib import Path

import pytest

from onoff_bridge.localstack import StackSettings, services
from onoff_bridge.localstack.fetch import fetch_kafka
from onoff_bridge.localstack.services import KafkaService
from onoff_bridge.localstack.toolchain import find_java, find_mvn


def test_a_cluster_id_starting_with_a_dash_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One random id in 64 starts with '-'; kafka-storage took it for an option and a
    # test session's dedicated broker failed to start about that often.
    monkeypatch.setattr(services, "new_cluster_id", lambda: "-" + "A" * 21)
    shared = StackSettings()
    libs = fetch_kafka(
        find_mvn(shared.mvn),
        shared.deploy_dir / "kafka" / "pom.xml",
        shared.dist_dir / "kafka",
        progress=print,
    )
    settings = StackSettings(home=tmp_path, kafka_port=1, kafka_controller_port=2)
    KafkaService(settings, find_java(shared.java), libs).prepare()
    meta = (settings.data_dir / "kafka" / "meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta

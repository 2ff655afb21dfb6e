"""The local stack formats Kafka's storage whatever random cluster id it draws."""

from __future__ import annotations

from pathlib import Path

import pytest

from onoff_bridge.localstack import services
from onoff_bridge.localstack.dedicated import DedicatedKafka, dedicated_settings


def test_a_cluster_id_starting_with_a_dash_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One random id in 64 starts with '-'; kafka-storage took it for an option and a
    # test session's dedicated broker failed to start about that often.
    monkeypatch.setattr(services, "new_cluster_id", lambda: "-" + "A" * 21)
    settings = dedicated_settings(tmp_path)
    DedicatedKafka(settings).service.prepare()
    meta = (settings.data_dir / "kafka" / "meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta

"""The whole pipeline through SASL_SSL Kafka and the registry behind basic auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack.secure import SecureEndpoints
from processors.topology import NAMES
from schemas import SchemaName
from tests.cluster.helpers import (
    API_KEY,
    Layout,
    children,
    cli,
    client_env,
    decode,
    read_all,
    spawn,
    topic_names_of,
    wait_until,
)
from tests.conftest import sample
from tests.integration.processor_fixtures import free_port
from tests.integration.recordings_fixtures import AudioServer


def test_deliveries_become_calls_recordings_and_metrics(
    cluster: SecureEndpoints,
    layout: Layout,
    server: AudioServer,
    stack_registry: SchemaRegistryClient,
    tmp_path: Path,
) -> None:
    topics = layout.topics
    env = client_env(
        cluster,
        layout,
        tmp_path,
        ONOFF_BRIDGE_RECORDINGS__DIRECTORY=str(tmp_path / "store"),
        ONOFF_BRIDGE_RECORDINGS__ALLOW_LOOPBACK="true",
    )
    applied = cli("topics", "apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    created = {
        line.split()[1] for line in applied.stdout.splitlines() if line.startswith("created")
    }
    assert created == set(topic_names_of(layout))

    answered = sample("cdr-answered-inbound.json") | {"id": f"s-answered-{layout.app_id_prefix}"}
    recorded = sample("recording.json") | {
        "id": f"s-recorded-{layout.app_id_prefix}",
        "callRecordingUrl": server.url("/audio/secure.mp3"),
    }
    with children() as running:
        for name in NAMES:
            port = free_port()
            worker = spawn(
                ["worker", name],
                env | {"ONOFF_BRIDGE_WEB_PORT": str(port)},
                tmp_path / f"{name}.log",
                f"http://127.0.0.1:{port}/healthz",
            )
            running.append(worker)
        ingress_port = free_port()
        ingress = spawn(
            ["ingress", "--port", str(ingress_port)],
            env,
            tmp_path / "ingress.log",
            f"http://127.0.0.1:{ingress_port}/readyz",
        )
        running.append(ingress)
        for child in running:
            child.wait_healthy()
        base = f"http://127.0.0.1:{ingress_port}/v1/onoff/cdr"
        for body in (answered, recorded, answered):  # the repeat is dropped by dedupe
            response = httpx.post(base, json=body, headers={"x-api-key": API_KEY}, timeout=10)
            assert response.status_code == 200, response.text

        config = cluster.kafka_config()
        registry = stack_registry
        raw = decode(
            registry, SchemaName.CALL_EVENT, topics.cdr_raw, read_all(config, topics.cdr_raw)
        )
        assert sorted(r["id"] for r in raw) == sorted(
            [answered["id"], recorded["id"], answered["id"]]
        )

        def calls() -> list[dict[str, Any]]:
            found = decode(registry, SchemaName.CALL, topics.calls, read_all(config, topics.calls))
            return found if len(found) >= 2 else []

        versions = sorted((c["id"], c["version"]) for c in wait_until(calls))
        assert versions == sorted([(answered["id"], 1), (recorded["id"], 1)])

        def recordings() -> list[dict[str, Any]]:
            return decode(
                registry,
                SchemaName.RECORDING,
                topics.recordings,
                read_all(config, topics.recordings),
            )

        stored = wait_until(recordings)
        assert [(r["callId"], r["status"]) for r in stored] == [(recorded["id"], "stored")]
        assert server.count("/audio/secure.mp3") == 1

        def metrics() -> list[dict[str, Any]]:
            found = decode(
                registry,
                SchemaName.USER_CALL_METRICS,
                topics.user_call_metrics,
                read_all(config, topics.user_call_metrics),
            )
            days = [m for m in found if m["granularity"] == "day" and m["callsTotal"] == 2]
            return days

        # Both samples are Ada's, on 2 March: one day window ends up counting both.
        assert wait_until(metrics), "no day window counted both calls"
        for child in running:
            assert child.process.poll() is None, child.tail()
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert cluster.password.get_secret_value() not in logs
    assert cluster.registry_password.get_secret_value() not in logs

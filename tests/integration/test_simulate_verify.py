"""The simulator against the real ingress and workers, then verify; and verify catching a lie."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.integration.ingress_fixtures import start_ingress
from tests.integration.processor_fixtures import WorkerFactory, free_port
from tests.integration.test_recordings_pipeline import recordings_env

KEY = "sim-key-0123456789"
WORKER_ENV = {"ONOFF_BRIDGE_METRICS__PARTITIONS": "4"}


def _env(endpoints: StackEndpoints, topics: TopicNames, ingress_url: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONOFF_BRIDGE_")}
    env |= {
        "ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers,
        "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL": endpoints.schema_registry_url,
        "ONOFF_BRIDGE_INGRESS_URL": ingress_url,
        "ONOFF_BRIDGE_API_KEY": KEY,
    }
    return env | {f"ONOFF_BRIDGE_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items()}


def _cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onoff_bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_simulated_run_verifies_and_a_false_ledger_does_not(
    endpoints: StackEndpoints, topic_names: TopicNames, workers: WorkerFactory, tmp_path: Path
) -> None:
    port = free_port()
    ingress = start_ingress(endpoints, topic_names, port, tmp_path / "ingress.log", KEY)
    try:
        for name, extra in (
            ("dedupe", {}),
            ("recordings", recordings_env(tmp_path / "store")),
            ("metrics", WORKER_ENV),
        ):
            workers.start(name, False, **extra)
        for worker in workers.workers:
            worker.wait_ready()
        env = _env(endpoints, topic_names, f"http://127.0.0.1:{port}")
        ledger = tmp_path / "ledger.jsonl"
        simulated = _cli(
            env,
            "simulate",
            "--seed=7",
            "--rate=5",
            "--duration=8",
            "--time-scale=120",
            f"--ledger={ledger}",
            "--linger=30",
            "--no-progress",
        )
        assert simulated.returncode == 0, simulated.stderr
        assert "gave up 0" in simulated.stdout, simulated.stdout

        verified = _cli(env, "verify", f"--ledger={ledger}", "--timeout=40")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "verify: OK" in verified.stdout
        assert "0 stored right" not in verified.stdout, verified.stdout

        # The ledger claims a 200 for an event that never reached the topic.
        lie = {
            "type": "event",
            "seq": 99999,
            "id": "never-sent",
            "kind": "call",
            "path": "/v1/onoff/cdr",
            "dueS": 0,
            "bodySha256": "0" * 64,
            "contentSha256": "0" * 64,
            "body": {"id": "never-sent"},
        }
        answer = {"type": "answer", "seq": 99999, "id": "never-sent", "attempt": 1}
        answer |= {"status": 200, "error": None, "quarantined": False, "elapsedMs": 1.0}
        with ledger.open("a") as out:
            out.write(json.dumps(lie) + "\n" + json.dumps(answer) + "\n")
        refused = _cli(env, "verify", f"--ledger={ledger}", "--timeout=3")
        assert refused.returncode == 1, refused.stdout
        assert "seq 99999" in refused.stdout and "never-sent" in refused.stdout
        assert "not in onoff.cdr.raw" in refused.stdout
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)

"""The simulator against the real ingress and workers, then verify; and verify catching a lie."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
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
        # Parsed, not a substring test: "10 stored right" contains "0 stored right".
        stored = re.search(r"(\d+) stored right", verified.stdout)
        assert stored is not None and int(stored.group(1)) > 0, verified.stdout

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


def _stack_env(path: Path) -> dict[str, str]:
    """What `source var/stack.env` sets."""
    found = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            found[key] = value
    return found


def test_simulate_then_verify_pass_against_make_run_as_the_readme_shows(
    endpoints: StackEndpoints, tmp_path: Path
) -> None:
    """`make run`, then `source var/stack.env`, `simulate` and `verify`, as in the README.

    `make run`'s recordings worker refuses loopback links (SSRF defence) except the
    one port it tells `simulate` to serve its audio on, through var/stack.env.
    """
    import os
    import signal
    import uuid

    from onoff_bridge.localstack import StackSettings

    suffix = uuid.uuid4().hex[:8]
    topics = {
        f"ONOFF_BRIDGE_TOPICS__{field.upper()}": f"run.{field}.{suffix}"
        for field in TopicNames.model_fields
    }
    keep = ("ONOFF_BRIDGE_STACK_",)  # this session's stack ports and home
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ONOFF_BRIDGE_") or k.startswith(keep)
    }
    base = {k: v for k, v in base.items() if not k.startswith("PYTEST")}
    ingress_port, processors_port, audio_port = free_port(), free_port(), free_port()
    run_env = base | topics | {"ONOFF_BRIDGE_APP_ID_PREFIX": f"run-{suffix}"}
    command = [
        sys.executable,
        "-m",
        "onoff_bridge",
        "run",
        f"--ingress-port={ingress_port}",
        f"--processors-port={processors_port}",
        f"--simulator-audio-port={audio_port}",
    ]
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(command, env=run_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "running (" not in log.read_text(errors="replace"):
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        sourced = base | topics | _stack_env(StackSettings().env_file)
        assert sourced["ONOFF_BRIDGE_SIMULATOR_AUDIO_PORT"] == str(audio_port)
        assert sourced["ONOFF_BRIDGE_INGRESS_URL"] == f"http://127.0.0.1:{ingress_port}"
        ledger = tmp_path / "ledger.jsonl"
        seed = int(suffix, 16) % 100_000
        simulated = _cli(
            sourced,
            "simulate",
            f"--seed={seed}",
            "--rate=5",
            "--duration=8",
            "--time-scale=120",
            f"--ledger={ledger}",
            "--linger=30",
            "--no-progress",
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert "gave up 0" in simulated.stdout and "not fetched 0" in simulated.stdout, (
            simulated.stdout
        )
        verified = _cli(sourced, "verify", f"--ledger={ledger}", "--timeout=60")
        assert verified.returncode == 0, f"seed {seed}:\n" + verified.stdout + verified.stderr
        # Parsed, not a substring test: "10 stored right" contains "0 stored right".
        stored = re.search(r"(\d+) stored right", verified.stdout)
        assert stored is not None and int(stored.group(1)) > 0, verified.stdout
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()

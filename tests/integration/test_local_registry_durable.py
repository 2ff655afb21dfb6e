"""The local stack's registry keeps its schemas and ids across a crash, as Kafka keeps records."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from onoff_bridge.localstack import StackSettings
from onoff_bridge.localstack.fetch import fetch_registry
from onoff_bridge.localstack.process import ManagedProcess
from onoff_bridge.localstack.services import RegistryService
from onoff_bridge.localstack.toolchain import find_java, find_mvn
from tests.integration.processor_fixtures import free_port


def _start(service: RegistryService, process: ManagedProcess) -> int:
    service.prepare()
    pid = process.start(service.command())
    deadline = time.monotonic() + 120
    while not service.ready():
        assert not process.exited(), process.log_file.read_text()[-2000:]
        assert time.monotonic() < deadline, "the registry did not start in 120 s"
        time.sleep(0.5)
    return pid


def _register(service: RegistryService, subject: str, schema: str) -> int:
    answer = httpx.post(
        f"{service.ccompat_url()}/subjects/{subject}/versions",
        json={"schema": schema},
        headers={"content-type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["id"])


def test_schemas_and_their_ids_survive_a_sigkill(tmp_path: Path) -> None:
    shared = StackSettings()  # the distribution the session's stack already fetched
    app = fetch_registry(
        find_mvn(shared.mvn),
        shared.deploy_dir / "registry" / "pom.xml",
        shared.dist_dir / "registry",
        lambda _: None,
    )
    settings = StackSettings(home=tmp_path, registry_port=free_port())
    service = RegistryService(settings, find_java(settings.java), app)
    process = ManagedProcess("registry", settings.run_dir, settings.log_dir / "registry.log")
    try:
        pid = _start(service, process)
        kept = '{"type":"record","name":"Kept","fields":[{"name":"a","type":"string"}]}'
        # Other subjects first, so the id of the one that matters is not simply 1.
        for n in range(3):
            filler = f'{{"type":"fixed","name":"F{n}","size":{n + 1}}}'
            _register(service, f"filler-{n}-value", filler)
        kept_id = _register(service, "kept-value", kept)
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not process.exited() and time.monotonic() < deadline:
            time.sleep(0.1)

        _start(service, process)
        after = httpx.get(f"{service.ccompat_url()}/schemas/ids/{kept_id}", timeout=10)
        assert after.status_code == 200, after.text
        assert '"Kept"' in after.json()["schema"]
        assert _register(service, "kept-value", kept) == kept_id  # not a new id
        subjects = httpx.get(f"{service.ccompat_url()}/subjects", timeout=10).json()
        assert "kept-value" in subjects
    finally:
        process.stop(timeout_s=10)

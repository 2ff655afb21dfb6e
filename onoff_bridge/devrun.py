"""`make run`: the local stack plus every service, in the foreground, until Ctrl-C.

The services run as child processes of this one, exactly as they would in
production (`onoff-bridge ingress`, `onoff-bridge worker ...`), with the local
stack's endpoints and a development API key in their environment.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from onoff_bridge.localstack import LocalStack, ServiceStartError, StackSettings
from onoff_bridge.settings import BridgeSettings
from onoff_bridge.topics import ensure_topics, topic_specs

Say = Callable[[str], None]


@dataclass(frozen=True)
class ChildService:
    name: str
    args: list[str]
    health_url: str | None


def development_api_key(home: Path) -> str:
    """The key `make run` uses, generated once and kept in var/ so curl commands keep working."""
    path = home / "dev-api-key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def run_everything(
    settings: StackSettings,
    keep_stack: bool,
    say: Say,
    ingress_port: int = 8080,
    processors_port: int = 6066,
) -> None:
    stack = LocalStack(settings, say)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: list[str] = []
    children: list[tuple[ChildService, subprocess.Popen[bytes]]] = []
    try:
        endpoints, started = stack.up()
        bridge = BridgeSettings()
        created = ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(bridge.topics, 3))
        if created:
            say("created topics " + ", ".join(created))
        api_key = development_api_key(settings.home)
        ingress_url = f"http://{settings.host}:{ingress_port}"
        processors_url = f"http://{settings.host}:{processors_port}"
        env = {
            **os.environ,
            **endpoints.as_env(),
            "ONOFF_BRIDGE_API_KEY": api_key,
            "ONOFF_BRIDGE_LOG_JSON": os.environ.get("ONOFF_BRIDGE_LOG_JSON", "false"),
            "ONOFF_BRIDGE_DATA_DIR": str(settings.home / "processors"),
            # The sample bodies are from March 2026: keep them inside the retentions.
            "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS": os.environ.get(
                "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS", "3650"
            ),
            "ONOFF_BRIDGE_METRICS__RETENTION_DAYS": os.environ.get(
                "ONOFF_BRIDGE_METRICS__RETENTION_DAYS", "3650"
            ),
        }
        stack.write_env({"ONOFF_BRIDGE_INGRESS_URL": ingress_url, "ONOFF_BRIDGE_API_KEY": api_key})
        services = [
            ChildService(
                "ingress",
                ["ingress", "--host", settings.host, "--port", str(ingress_port)],
                f"{ingress_url}/healthz",
            ),
            ChildService(
                "processors",
                ["worker", "all", "--web-port", str(processors_port)],
                f"{processors_url}/healthz",
            ),
        ]
        for service in services:
            children.append((service, _start_child(service, env)))
        for service, process in children:
            _wait_healthy(service, process)
        say("")
        say(f"  kafka      {endpoints.kafka_bootstrap_servers}")
        say(f"  registry   {endpoints.schema_registry_url}")
        say(f"  ingress    {ingress_url}  (POST /v1/onoff/cdr, /v1/onoff/sms; /metrics, /readyz)")
        say(
            f"  workers    {processors_url}  (dedupe; recordings and metrics on the next two"
            " ports; /healthz, /metrics)"
        )
        say(f"  api key    {api_key}")
        say(f"  env        source {settings.env_file}")
        say("")
        say(
            f"  try: curl -H 'x-api-key: {api_key}' --data-binary @tests/samples/"
            f"cdr-missed-inbound.json {ingress_url}/v1/onoff/cdr"
        )
        say("running; Ctrl-C stops everything")
        while not stop.wait(0.5):
            for service, process in children:
                if process.poll() is not None:
                    say(f"{service.name} exited with {process.returncode}; stopping everything")
                    stop.set()
    finally:
        for service, process in reversed(children):
            _stop_child(service, process, say)
        if not keep_stack and started:
            say("stopping " + ", ".join(started))
            stack.down(started)


def _start_child(service: ChildService, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "onoff_bridge", *service.args]
    return subprocess.Popen(command, env=env, start_new_session=True)


def _wait_healthy(
    service: ChildService, process: subprocess.Popen[bytes], timeout_s: float = 60
) -> None:
    if service.health_url is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(f"{service.name} exited with {process.returncode}")
        try:
            if httpx.get(service.health_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServiceStartError(f"{service.name} did not answer {service.health_url}")


def _stop_child(service: ChildService, process: subprocess.Popen[bytes], say: Say) -> None:
    if process.poll() is not None:
        return
    say(f"stopping {service.name}")
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

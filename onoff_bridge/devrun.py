"""`make run`: the local stack plus every service, in the foreground, until Ctrl-C.

The services run as child processes of this one, exactly as they would in
production (`onoff-bridge ingress`, `onoff-bridge worker ...`), with the local
stack's endpoints and a development API key in their environment. A service
that crashes is restarted with a back-off (`onoff_bridge.supervisor`), said on
the terminal and in var/log/run.log; only Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from onoff_bridge import workers
from onoff_bridge.localstack import LocalStack, ServiceStartError, StackSettings
from onoff_bridge.supervisor import ChildSpec, ChildStartError, Supervisor
from onoff_bridge.topics import ensure_topics
from processors.settings import ProcessorSettings
from processors.topology import all_topics

Say = Callable[[str], None]


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
    simulator_audio_port: int = 8089,
) -> None:
    stack = LocalStack(settings, say)
    _log_supervision_to(settings.log_dir / "run.log")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: list[str] = []
    supervisor: Supervisor | None = None
    try:
        endpoints, started = stack.up()
        # Every topic, Faust's own included: the workers never create one.
        bridge = ProcessorSettings(
            kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers, topic_partitions=3
        )
        created = ensure_topics(bridge.kafka_config(), all_topics(bridge))
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
            # The ingress outlives a stopped broker or registry: deliveries wait in
            # var/spool (fsynced) and drain once they are back (docs/ingress.md#the-spool).
            "ONOFF_BRIDGE_SPOOL_ENABLED": os.environ.get("ONOFF_BRIDGE_SPOOL_ENABLED", "true"),
            "ONOFF_BRIDGE_SPOOL_DIRECTORY": os.environ.get(
                "ONOFF_BRIDGE_SPOOL_DIRECTORY", str(settings.home / "spool")
            ),
            # The sample bodies are from March 2026: keep them inside the retentions.
            "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS": os.environ.get(
                "ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS", "3650"
            ),
            "ONOFF_BRIDGE_METRICS__RETENTION_DAYS": os.environ.get(
                "ONOFF_BRIDGE_METRICS__RETENTION_DAYS", "3650"
            ),
            # `onoff-bridge simulate` serves its recordings on loopback, which the recordings
            # worker refuses (SSRF defence); it trusts this one port of this host, no other.
            "ONOFF_BRIDGE_RECORDINGS__TRUSTED_ENDPOINTS": os.environ.get(
                "ONOFF_BRIDGE_RECORDINGS__TRUSTED_ENDPOINTS",
                json.dumps([f"{settings.host}:{simulator_audio_port}"]),
            ),
        }
        stack.write_env(
            {
                "ONOFF_BRIDGE_INGRESS_URL": ingress_url,
                "ONOFF_BRIDGE_API_KEY": api_key,
                "ONOFF_BRIDGE_SIMULATOR_AUDIO_PORT": str(simulator_audio_port),
            }
        )
        specs = [
            _child(
                "ingress",
                ["ingress", "--host", settings.host, "--port", str(ingress_port)],
                env,
                f"{ingress_url}/healthz",
            ),
            _child(
                "processors",
                ["worker", "all", "--web-port", str(processors_port)],
                env,
                f"{processors_url}/healthz",
            ),
        ]
        # Longer than `worker all` gives its own workers, so it can stop them in order.
        supervisor = Supervisor(specs, say, stop_timeout_s=workers.STOP_TIMEOUT_S + 30.0)
        supervisor.start()
        try:
            supervisor.wait_healthy(timeout_s=120.0)
        except ChildStartError as exc:
            raise ServiceStartError(str(exc)) from exc
        say("")
        say(f"  kafka      {endpoints.kafka_bootstrap_servers}")
        say(f"  registry   {endpoints.schema_registry_url}")
        say(f"  ingress    {ingress_url}  (POST /v1/onoff/cdr, /v1/onoff/sms; /metrics, /readyz)")
        say(
            f"  workers    {processors_url}  (dedupe; recordings and metrics on the next two"
            " ports; /healthz, /metrics)"
        )
        say(f"  simulator  audio on {settings.host}:{simulator_audio_port} (onoff-bridge simulate)")
        say(f"  api key    {api_key}")
        say(f"  env        source {settings.env_file}")
        say("")
        say(
            f"  try: curl -H 'x-api-key: {api_key}' --data-binary @tests/samples/"
            f"cdr-missed-inbound.json {ingress_url}/v1/onoff/cdr"
        )
        pids = ", ".join(f"{name} pid {pid}" for name, pid in supervisor.pids.items())
        say(f"running ({pids}); a crashed service is restarted; Ctrl-C stops everything")
        supervisor.run(stop)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if not keep_stack and started:
            say("stopping " + ", ".join(started))
            stack.down(started)


def _child(name: str, args: list[str], env: dict[str, str], health_url: str) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-m", "onoff_bridge", *args], env, health_url)


def _log_supervision_to(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("onoff_bridge.supervisor")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False

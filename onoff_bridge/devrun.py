"""`make run`: the local stack plus every service, in the foreground, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from onoff_bridge.localstack import LocalStack, StackSettings


def run_everything(settings: StackSettings, keep_stack: bool, say: Callable[[str], None]) -> None:
    stack = LocalStack(settings, say)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: list[str] = []
    try:
        endpoints, started = stack.up()
        say("")
        say(f"  kafka      {endpoints.kafka_bootstrap_servers}")
        say(f"  registry   {endpoints.schema_registry_url}")
        say(f"  env        source {settings.env_file}")
        say("")
        say("running; Ctrl-C stops everything")
        stop.wait()
    finally:
        if not keep_stack and started:
            say("stopping " + ", ".join(started))
            stack.down(started)

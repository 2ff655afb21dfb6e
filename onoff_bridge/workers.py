"""`worker all`: one child process per processor, each restarted if it crashes.

They cannot share one Faust app: onoff.calls is the dedupe table's changelog
and the other processors' source, and a Faust app that both recovers a table
from a topic and consumes it gave wrong metrics after a restart. Each child
gets its own web port: the base port, then the next ones.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from onoff_bridge.supervisor import ChildSpec, Supervisor
from processors.settings import ProcessorSettings

# Faust's own shutdown of a worker can take its broker session timeout; give it room.
STOP_TIMEOUT_S = 60.0


def run_each(settings: ProcessorSettings, names: Sequence[str], say: Callable[[str], None]) -> int:
    """Runs every processor in its own child process until SIGTERM or SIGINT; returns 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    specs = []
    for index, name in enumerate(names):
        port = settings.web_port + index
        env = {**os.environ, "ONOFF_BRIDGE_WEB_PORT": str(port)}
        command = [sys.executable, "-m", "onoff_bridge", "worker", name]
        specs.append(ChildSpec(name, command, env, f"http://{settings.web_host}:{port}/healthz"))
    supervisor = Supervisor(specs, say, stop_timeout_s=STOP_TIMEOUT_S)
    supervisor.start()
    for name, pid in supervisor.pids.items():
        spec = next(s for s in specs if s.name == name)
        say(f"worker {name}: pid {pid}, {spec.health_url}")
    try:
        supervisor.run(stop)
    finally:
        supervisor.stop()
    return 0

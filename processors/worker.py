"""Runs processors: `onoff-bridge worker dedupe`, or `worker all` for every one.

One processor runs in this process as a Faust worker. Faust's Worker handles
SIGTERM and SIGINT: it stops the agents, flushes the producer, commits what was
processed and leaves the consumer group.

`all` starts one such worker per processor, as child processes of this one,
each on its own web port (the base port, then the next ones). They cannot share
one Faust app: onoff.calls is the dedupe table's changelog and the other
processors' source, and a Faust app that both recovers a table from a topic and
consumes it gave wrong metrics after a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import faust

from processors.app import build_app
from processors.settings import ProcessorSettings


def run_worker(settings: ProcessorSettings, names: Sequence[str]) -> None:
    app = build_app(settings, names)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()


def run_each(settings: ProcessorSettings, names: Sequence[str], say: Callable[[str], None]) -> int:
    """Runs every processor in its own child process until a signal; returns the exit code."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    for index, name in enumerate(names):
        port = settings.web_port + index
        env = {**os.environ, "ONOFF_BRIDGE_WEB_PORT": str(port)}
        command = [sys.executable, "-m", "onoff_bridge", "worker", name]
        # Own process groups: a terminal's Ctrl-C reaches this supervisor, which stops them.
        children.append((name, subprocess.Popen(command, env=env, start_new_session=True)))
        say(f"worker {name}: pid {children[-1][1].pid}, http://{settings.web_host}:{port}/healthz")
    code = 0
    while not stopping:
        for name, child in children:
            if child.poll() is not None:
                say(f"worker {name} exited with {child.returncode}; stopping the others")
                code, stopping = 1, True
        time.sleep(0.5)
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for _, child in children:
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code

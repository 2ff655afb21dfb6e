"""Keeps child services running: a crashed one is restarted with a back-off, not fatal.

`make run` and `worker all` run their services as child processes. A child
that exits on its own (a crash, an OOM kill, a bug in one processor) is started
again after a delay that doubles with each quick failure up to a cap, and is
reset once the child has stayed up for a while, as Kubernetes' CrashLoopBackOff
does. Everything stops only when the supervisor is told to: Ctrl-C or SIGTERM.
So one crash never takes Kafka, the registry or the other services with it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class ChildStartError(Exception):
    """A child did not become healthy when first started."""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    health_url: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Delay before restart n (1-based): initial * 2**(n-1), at most `cap_s`."""

    initial_s: float = 1.0
    cap_s: float = 30.0
    # A child that stayed up this long is healthy again: its next crash waits `initial_s`.
    reset_after_s: float = 60.0

    def delay(self, restarts: int) -> float:
        return float(min(self.cap_s, self.initial_s * 2 ** max(0, restarts - 1)))


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0  # consecutive quick failures
    restart_at: float | None = None
    total_restarts: int = 0


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        say: Say,
        backoff: Backoff | None = None,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self._specs = list(specs)
        self._say = say
        self._backoff = backoff or Backoff()
        self._stop_timeout_s = stop_timeout_s
        self._children: list[_Child] = []

    @property
    def pids(self) -> dict[str, int]:
        return {child.spec.name: child.process.pid for child in self._children}

    @property
    def restarts(self) -> dict[str, int]:
        return {child.spec.name: child.total_restarts for child in self._children}

    def start(self) -> None:
        for spec in self._specs:
            self._children.append(_Child(spec, _spawn(spec), time.monotonic()))

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Waits until every child with a health URL answers 200; raises if one dies first."""
        for child in self._children:
            _wait_healthy(child, timeout_s)

    def run(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Restarts children that exit until `stop` is set."""
        while not stop.wait(poll_s):
            self.check()

    def check(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child, now)
                continue
            code = child.process.poll()
            if code is None:
                continue
            ran_s = now - child.started_at
            child.restarts = 1 if ran_s >= self._backoff.reset_after_s else child.restarts + 1
            delay = self._backoff.delay(child.restarts)
            child.restart_at = now + delay
            message = (
                f"{child.spec.name} exited with {code} after {ran_s:.0f}s;"
                f" restarting in {delay:g}s (restart {child.total_restarts + 1})"
            )
            self._say(message)
            log.warning(message)

    def stop(self) -> None:
        """SIGTERM to every child; SIGKILL to the group of any still up after the timeout."""
        running = [child for child in self._children if child.process.poll() is None]
        for child in running:
            self._say(f"stopping {child.spec.name}")
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def _restart(self, child: _Child, now: float) -> None:
        child.process = _spawn(child.spec)
        child.started_at = now
        child.restart_at = None
        child.total_restarts += 1
        message = f"{child.spec.name} restarted: pid {child.process.pid}"
        self._say(message)
        log.warning(message)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM from the kernel when the supervisor dies.

    A supervisor SIGKILLed (an OOM kill, or `make run` giving up on a slow `worker all`)
    cannot stop its children, and in their own sessions nothing else reaches them: they
    would run on as orphans, holding ports and consumer-group memberships.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
    # Own process groups: a terminal's Ctrl-C reaches the supervisor, which stops them in order.
    return subprocess.Popen(
        list(spec.command),
        env=dict(spec.env),
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _wait_healthy(child: _Child, timeout_s: float) -> None:
    url = child.spec.health_url
    if url is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise ChildStartError(f"{child.spec.name} exited with {child.process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ChildStartError(f"{child.spec.name} did not answer {url} within {timeout_s:.0f}s")

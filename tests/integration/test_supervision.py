"""A crashed service is restarted with a back-off; only a signal stops everything.

Real child processes throughout: `onoff-bridge worker all` and `onoff-bridge run`
on the session's broker and registry, SIGKILLed children, and the supervisor's
own output read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from onoff_bridge.supervisor import Backoff, ChildSpec, Supervisor
from tests.integration.processor_fixtures import free_port, provision_worker_topics, worker_env


class Output:
    """Collects a process's merged stdout/stderr lines on a thread, for waiting on a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def join(self) -> None:
        self._reader.join(timeout=10)
        assert self._process.stdout is not None
        self._process.stdout.close()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            if self._process.poll() is not None and seen == len(self.lines):
                break
            time.sleep(0.1)
        raise AssertionError("line not seen; output:\n" + "\n".join(self.lines[-40:]))


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = Output(process)
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.join()


def wait_healthy(url: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout_s}s")


NAMES = ("dedupe", "recordings", "metrics")


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda line: line.startswith(prefix)


def pid_of(line: str) -> int:
    return int(line.split("pid ")[1].split(",")[0].split(")")[0])


def test_a_child_that_keeps_crashing_is_restarted_with_a_growing_delay() -> None:
    said: list[str] = []
    crash = ChildSpec("crasher", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    supervisor = Supervisor([crash], said.append, Backoff(initial_s=0.2, cap_s=0.8))
    supervisor.start()
    stop = threading.Event()
    runner = threading.Thread(target=supervisor.run, args=(stop, 0.05))
    runner.start()
    deadline = time.monotonic() + 20
    while supervisor.restarts["crasher"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join()
    supervisor.stop()
    delays = [line.split("restarting in ")[1] for line in said if "restarting in" in line]
    assert supervisor.restarts["crasher"] >= 4
    assert delays[:4] == [
        "0.2s (restart 1)",
        "0.4s (restart 2)",
        "0.8s (restart 3)",
        "0.8s (restart 4)",
    ]
    assert all("exited with 3" in line for line in said if "exited" in line)


def test_worker_all_restarts_a_killed_worker_and_keeps_the_others(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(endpoints, topic_names, "test-supervised", tmp_path / "data")
    provision_worker_topics(endpoints, topic_names, "test-supervised", "all")
    command = [sys.executable, "-m", "onoff_bridge", "worker", "all", "--web-port", str(port)]
    with started(command, env) as (process, output):
        pids = {name: pid_of(output.wait_for(starts(f"worker {name}: pid"))) for name in NAMES}
        for offset in range(3):
            wait_healthy(f"http://127.0.0.1:{port + offset}/healthz")
        os.kill(pids["recordings"], signal.SIGKILL)
        output.wait_for(lambda line: line.startswith("recordings exited with -9"))
        restarted = pid_of(output.wait_for(lambda line: line.startswith("recordings restarted")))
        assert restarted != pids["recordings"]
        wait_healthy(f"http://127.0.0.1:{port + 1}/healthz")
        assert process.poll() is None
        for name in ("dedupe", "metrics"):  # untouched: same processes
            exits = [line for line in output.lines if line.startswith(f"{name} exited")]
            assert not exits and Path(f"/proc/{pids[name]}").exists(), "\n".join(output.lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
    for pid in (*pids.values(), restarted):
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def test_workers_do_not_outlive_a_killed_worker_all(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> None:
    """`worker all` SIGKILLed (OOM, or `make run` giving up on it): its workers stop too."""
    port = free_port()
    env = worker_env(endpoints, topic_names, "test-orphans", tmp_path / "data")
    provision_worker_topics(endpoints, topic_names, "test-orphans", "all")
    command = [sys.executable, "-m", "onoff_bridge", "worker", "all", "--web-port", str(port)]
    with started(command, env) as (process, output):
        pids = {name: pid_of(output.wait_for(starts(f"worker {name}: pid"))) for name in NAMES}
        for offset in range(3):
            wait_healthy(f"http://127.0.0.1:{port + offset}/healthz")
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 90
        while alive := [n for n, pid in pids.items() if _running(pid)]:
            assert time.monotonic() < deadline, f"orphaned workers still running: {alive}"
            time.sleep(0.5)


def _running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def test_make_run_restarts_a_crashed_ingress_and_stops_only_on_a_signal(
    endpoints: StackEndpoints, tmp_path: Path
) -> None:
    ingress_port, processors_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONOFF_BRIDGE_", "PYTEST"))}
    env["ONOFF_BRIDGE_APP_ID_PREFIX"] = f"test-run-{tmp_path.name[-8:]}"
    command = [
        sys.executable,
        "-m",
        "onoff_bridge",
        "run",
        "--keep-stack",
        "--ingress-port",
        str(ingress_port),
        "--processors-port",
        str(processors_port),
    ]
    with started(command, env) as (process, output):
        running = output.wait_for(lambda line: line.startswith("running ("), timeout_s=240)
        ingress_pid = pid_of(running.split("ingress ")[1])
        os.kill(ingress_pid, signal.SIGKILL)
        output.wait_for(lambda line: line.startswith("ingress exited with -9"))
        output.wait_for(lambda line: line.startswith("ingress restarted"))
        wait_healthy(f"http://127.0.0.1:{ingress_port}/healthz")
        # The stack and the processors lived through it.
        assert process.poll() is None
        wait_healthy(f"http://127.0.0.1:{processors_port}/healthz")
        with httpx.Client() as client:
            assert client.get(endpoints.schema_registry_url + "/subjects").status_code == 200
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    assert any(line.startswith("stopping ingress") for line in output.lines)
    assert Path("var/log/run.log").read_text().count("ingress exited with -9") >= 1


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    return True

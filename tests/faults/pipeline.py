"""The whole pipeline as real child processes, driven by `simulate` and checked by `verify`.

A `Pipeline` belongs to one test: its own topics (`onoff-bridge topics apply`,
Faust's own included), the ingress (`onoff-bridge ingress`), and the three
processors under `onoff-bridge worker all` (each in a child process of its
own, started again by the supervisor when it dies, as under `make run`). The
simulator runs in the background against the ingress while the test injects
its fault; `verify` then reads every topic back and checks it against the
simulator's ledger. Every process gets its settings the way production does:
ONOFF_BRIDGE_* variables (`tests.cluster.helpers.client_env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from processors.topology import NAMES
from tests.cluster.helpers import Child, Layout, Reachable, cli, client_env, spawn

# Faust keeps a SIGKILLed member in its group for 60 s by default, and the next worker's
# first rebalance waits that long; the tests shorten it (as the other worker tests do).
FAUST_ENV = {
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "10",
}


PASSED_ON = ("ONOFF_BRIDGE_FAUST_FIXES_OFF", "ONOFF_BRIDGE_SPOOL_ENABLED")


def recordings_env(store: Path) -> dict[str, str]:
    """The recordings worker fetches from the simulator's loopback server and retries fast."""
    prefix = "ONOFF_BRIDGE_RECORDINGS__"
    return {
        f"{prefix}DIRECTORY": str(store),
        f"{prefix}ALLOW_LOOPBACK": "true",
        f"{prefix}READ_TIMEOUT_S": "5",
        f"{prefix}RETRY_BASE_DELAY_S": "0.2",
        f"{prefix}RETRY_MAX_DELAY_S": "2",
        f"{prefix}RETRY_DEADLINE_S": "180",
    }


@dataclass(frozen=True)
class Traffic:
    """One `simulate` run: small, but with every kind of delivery inside `duration_s`.

    At `time_scale` 60 the post-call updates come 5 s after their call and the
    recordings 5 to 8 s after, so the last deliveries are due about 8 s after
    `duration_s`. `retry_delay_s` sets how long the sender's 5 tries span.
    """

    seed: int
    rate: float = 3.0
    duration_s: float = 24.0
    time_scale: float = 60.0
    retry_delay_s: float = 2.0
    timeout_s: float = 10.0
    linger_s: float = 60.0
    options: tuple[str, ...] = ()

    def args(self, ledger: Path) -> list[str]:
        return [
            "simulate",
            f"--seed={self.seed}",
            f"--rate={self.rate}",
            f"--duration={self.duration_s}",
            f"--time-scale={self.time_scale}",
            f"--retry-delay={self.retry_delay_s}",
            f"--timeout={self.timeout_s}",
            f"--linger={self.linger_s}",
            f"--ledger={ledger}",
            "--no-progress",
            *self.options,
        ]


class Simulation:
    """`onoff-bridge simulate` running in the background; its ledger read as it grows."""

    def __init__(self, process: subprocess.Popen[bytes], ledger: Path, log: Path) -> None:
        self.process = process
        self.ledger = ledger
        self.log = log
        self.started_at = 0.0  # Unix time of the activation payload's answer

    def wait_started(self, timeout_s: float = 60.0) -> None:
        """Until the activation payload was answered: the load starts now."""
        deadline = time.monotonic() + timeout_s
        while not (answers := self.answers()):
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, "simulate did not start\n" + self.output()
            time.sleep(0.1)
        self.started_at = float(answers[0]["at"])

    def elapsed(self) -> float:
        return time.time() - self.started_at

    def sleep_until(self, at_s: float) -> None:
        """Sleeps until `at_s` seconds into the load; the load must still be running."""
        time.sleep(max(0.0, at_s - self.elapsed()))
        assert self.process.poll() is None, "the load ended before the fault\n" + self.output()

    def entries(self) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.ledger.read_bytes().splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line being written
                    found.append(json.loads(line))
        return found

    def answers(self) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["type"] == "answer"]

    def finish(self, timeout_s: float) -> str:
        """Waits for the run to end; returns its summary line. It must have succeeded."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"simulate still ran after {timeout_s}s\n" + self.output()
            ) from None
        assert self.process.returncode == 0, self.output()
        return self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free now (`worker all` uses base + i)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError(f"no {count} consecutive free ports")


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


class Pipeline:
    """Topics, ingress and processors of one test, on the Kafka and registry it is given."""

    def __init__(self, reachable: Reachable, layout: Layout, home: Path, **extra: str) -> None:
        self.home = home
        self.layout = layout
        self.store = home / "store"
        self.ingress_port = _consecutive_free_ports(1)
        self.workers_port = _consecutive_free_ports(len(NAMES))
        env = client_env(reachable, layout, home, **FAUST_ENV, **recordings_env(self.store))
        # Passed on, so the matrix can be run with a Faust fix switched off (docs/faust.md)
        # or with the ingress's spool on; the spool, if any, lives in the test's directory.
        for name in PASSED_ON:
            if name in os.environ:
                env[name] = os.environ[name]
        env["ONOFF_BRIDGE_SPOOL_DIRECTORY"] = str(home / "spool")
        self.env = (
            env
            | {
                "ONOFF_BRIDGE_INGRESS_URL": f"http://127.0.0.1:{self.ingress_port}",
                "ONOFF_BRIDGE_WEB_PORT": str(self.workers_port),
            }
            | extra
        )
        self.ingress: Child | None = None
        self.workers: Child | None = None
        self._ingress_starts = 0

    # -- topics, ingress, processors ---------------------------------------------------

    def apply_topics(self) -> None:
        applied = cli("topics", "apply", env=self.env, timeout_s=120)
        assert applied.returncode == 0, applied.stdout + applied.stderr

    def start_ingress(self) -> Child:
        self._ingress_starts += 1
        self.ingress = spawn(
            ["ingress", "--port", str(self.ingress_port)],
            self.env,
            self.home / f"ingress-{self._ingress_starts}.log",
            f"http://127.0.0.1:{self.ingress_port}/readyz",
        )
        return self.ingress

    def stop_ingress(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Signals the ingress and waits for it to exit; returns its exit code."""
        assert self.ingress is not None
        self.ingress.process.send_signal(sig)
        return self.ingress.process.wait(timeout=timeout_s)

    def start_workers(self) -> Child:
        self.workers = spawn(
            ["worker", "all"], self.env, self.home / "workers.log", self.health_urls()[0]
        )
        return self.workers

    def health_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.workers_port + n}/healthz" for n in range(len(NAMES))]

    def wait_workers_healthy(self, timeout_s: float = 120.0) -> None:
        """Until every processor answers /healthz with 200 (tables restored, partitions held)."""
        assert self.workers is not None
        deadline = time.monotonic() + timeout_s
        for url in self.health_urls():
            while True:
                assert self.workers.process.poll() is None, self.workers.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{url} not healthy\n{self.workers.tail()}"
                time.sleep(0.3)

    def start(self) -> None:
        """Topics, then the processors and the ingress, until all of them answer."""
        self.apply_topics()
        self.start_workers()
        ingress = self.start_ingress()
        ingress.wait_healthy()
        self.wait_workers_healthy()

    def worker_pids(self) -> dict[str, int]:
        """The pid of each processor's child process under `worker all`, as it is now."""
        assert self.workers is not None
        pids = {}
        for child in _children_of(self.workers.process.pid):
            command = [part for part in _command_line(child) if part]
            if "worker" in command[:-1] and (name := command[-1]) in NAMES:
                pids[name] = child
        return pids

    def kill_worker(self, name: str, timeout_s: float = 60.0) -> int:
        """SIGKILLs one processor's process (waiting for the supervisor to have one); its pid."""
        deadline = time.monotonic() + timeout_s
        while (pid := self.worker_pids().get(name)) is None:
            assert time.monotonic() < deadline, f"no {name} process to kill"
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        return pid

    # -- load and check ----------------------------------------------------------------

    def simulate(self, traffic: Traffic, name: str = "simulation") -> Simulation:
        ledger = self.home / f"{name}.jsonl"
        log = self.home / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "onoff_bridge", *traffic.args(ledger)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        simulation = Simulation(process, ledger, log)
        simulation.wait_started()
        return simulation

    def verify(self, ledger: Path, timeout_s: float = 90.0) -> subprocess.CompletedProcess[str]:
        return cli(
            "verify",
            f"--ledger={ledger}",
            f"--timeout={timeout_s}",
            env=self.env,
            timeout_s=timeout_s + 120,
        )

    @property
    def spooling(self) -> bool:
        """Whether the ingress keeps what Kafka cannot take in a spool and answers 200."""
        return self.env.get("ONOFF_BRIDGE_SPOOL_ENABLED", "").lower() in {"1", "true", "yes", "on"}

    def close(self) -> None:
        if self.ingress is not None:
            self.ingress.stop()
        if self.workers is not None:
            # The supervisor stops its children on SIGTERM; if it takes too long, none of
            # them may outlive the test.
            processors = self.worker_pids()
            self.workers.stop()
            for name, pid in processors.items():
                if [part for part in _command_line(pid) if part][-1:] == [name]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_pipeline(
    reachable: Reachable, layout: Layout, home: Path, **extra: str
) -> Iterator[Pipeline]:
    pipeline = Pipeline(reachable, layout, home, **extra)
    try:
        yield pipeline
    finally:
        pipeline.close()


def statuses(answers: list[dict[str, Any]]) -> dict[str, int]:
    """How often each answer came: "200", "503", or the error's kind for no answer."""
    counts: dict[str, int] = {}
    for answer in answers:
        status = answer["status"]
        key = str(status) if status is not None else str(answer["error"]).split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def verified(result: subprocess.CompletedProcess[str]) -> str:
    """verify's report, which must say OK; on a mismatch the assertion shows all of it."""
    waited = result.stderr.strip().splitlines()[-3:]  # its "waiting: ..." lines, the last ones
    report = result.stdout[-6000:] + "\n".join(waited)
    assert result.returncode == 0 and "verify: OK" in result.stdout, report
    return result.stdout


def verify_summary(stdout: str) -> str:
    """verify's counts (raw, calls, recordings, metrics) on one line, for the report."""
    prefixes = ("raw: ", "calls: ", "recordings: ", "metrics: ")
    return " | ".join(line for line in stdout.splitlines() if line.startswith(prefixes))

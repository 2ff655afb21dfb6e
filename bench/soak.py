"""`make soak`: a long load on `onoff-bridge run`, then proof nothing was lost or counted twice.

1. starts `onoff-bridge run` (the local stack, the ingress, `worker all`) on the
   ports of SOAK_INGRESS_PORT / SOAK_PROCESSORS_PORT (8080, 6066);
2. runs `onoff-bridge simulate` at SOAK_RATE new calls and SMS per second for
   SOAK_DURATION_S, with one user making SOAK_HEAVY_USER_CALLS of the calls on
   one day and two poison calls (years 9999 and 1); every 15 s it records the
   metrics worker's lag, each child's /healthz, and the restarts said so far;
3. waits until the metrics worker has caught up (no lag on any partition) and
   says how long that took after the last delivery;
4. runs `onoff-bridge verify` against the ledger (every call counted once);
5. checks the stack is still up: `run` alive, every child's /healthz answering,
   no child restarted; reads the largest window record in the metrics changelog;
6. stops `run` as Ctrl-C does, saves bench/results/soak-<time>.json and exits 1
   if verify failed, a child restarted or is down.

The figures are printed as measured; nothing here is a pass/fail on speed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bench.common import RESULTS, machine, save, say
from onoff_bridge.simulation.ledger import read_ledger

VAR = Path("var")
SAMPLE_EVERY_S = 15.0


@dataclass(frozen=True)
class SoakOptions:
    rate: float = float(os.environ.get("SOAK_RATE", "200"))
    duration_s: float = float(os.environ.get("SOAK_DURATION_S", "600"))
    heavy_user_calls: int = int(os.environ.get("SOAK_HEAVY_USER_CALLS", "100000"))
    time_scale: float = float(os.environ.get("SOAK_TIME_SCALE", "10"))
    seed: int = int(os.environ.get("SOAK_SEED", str(int(time.time()) % 100_000)))
    catch_up_timeout_s: float = float(os.environ.get("SOAK_CATCH_UP_TIMEOUT_S", "3600"))
    linger_s: float = float(os.environ.get("SOAK_LINGER_S", "300"))
    # The ingress answers after Kafka's ack (~0.3 s on a loaded 2-core machine): 32 requests
    # in flight held the sender to ~50 deliveries/s, far below the rate asked for.
    concurrency: int = int(os.environ.get("SOAK_CONCURRENCY", "256"))
    ingress_port: int = int(os.environ.get("SOAK_INGRESS_PORT", "8080"))
    processors_port: int = int(os.environ.get("SOAK_PROCESSORS_PORT", "6066"))


@dataclass
class Soak:
    options: SoakOptions
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        first = self.options.processors_port
        return {"dedupe": first, "recordings": first + 1, "metrics": first + 2}


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(?:export\s+)?(ONOFF_BRIDGE_[A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            env[match.group(1)] = match.group(2).strip("'\"")
    return env


def health(port: int) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        report: dict[str, Any] = answer.json()
        report["http_status"] = answer.status_code
        return report
    except (httpx.HTTPError, ValueError):
        return None


def lag(report: dict[str, Any] | None) -> int | None:
    if report is None:
        return None
    return sum(p["lag"] or 0 for p in report.get("partitions", []))


def restarts(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "exited with" in line]


def sample(soak: Soak, log: Path, started: float) -> dict[str, Any]:
    reports = {name: health(port) for name, port in soak.ports.items()}
    ingress = None
    with contextlib.suppress(httpx.HTTPError):
        ingress = httpx.get(
            f"http://127.0.0.1:{soak.options.ingress_port}/readyz", timeout=5
        ).status_code
    point = {
        "t_s": round(time.monotonic() - started, 1),
        "ingress_readyz": ingress,
        "status": {n: (r or {}).get("status", "down") for n, r in reports.items()},
        "lag": {n: lag(r) for n, r in reports.items()},
        "restarts": len(restarts(log)),
    }
    soak.samples.append(point)
    say(f"  t={point['t_s']:>6}s lag {point['lag']} status {point['status']}")
    return point


def largest_window_record(bootstrap: str, topic: str) -> tuple[int, int]:
    """(bytes of the largest window tally, records read) in the windows changelog."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"soak-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {}
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        largest = read = 0
        deadline = time.monotonic() + 300
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                continue
            read += 1
            key = (message.key() or b"").decode(errors="replace")
            if not key.startswith('["'):  # a window's tally, not a call's share
                largest = max(largest, len(message.value() or b""))
            partition, offset = message.partition(), message.offset()
            if partition in ends and offset is not None and offset + 1 >= ends[partition]:
                del ends[partition]
        return largest, read
    finally:
        consumer.close()


def main() -> int:
    # SIGTERM (e.g. from `timeout`) stops the run as Ctrl-C does: the `finally` below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = SoakOptions()
    soak = Soak(options)
    bridge = [sys.executable, "-m", "onoff_bridge"]
    (VAR / "log").mkdir(parents=True, exist_ok=True)
    run_log = VAR / "log" / "soak-run.log"
    ledger = VAR / "simulation" / f"soak-{options.seed}.jsonl"
    say(f"soak: seed {options.seed}, {options.rate}/s for {options.duration_s:.0f} s, ")
    say(f"  heavy user {options.heavy_user_calls} calls, poison calls; ledger {ledger}")
    # The simulator serves the audio on loopback, which the recordings worker refuses
    # by default (SSRF defence); allow it for this run only.
    run_env = {**os.environ, "ONOFF_BRIDGE_RECORDINGS__ALLOW_LOOPBACK": "true"}
    simulate: subprocess.Popen[bytes] | None = None
    with run_log.open("w") as out:
        run = subprocess.Popen(
            [
                *bridge,
                "run",
                "--ingress-port",
                str(options.ingress_port),
                "--processors-port",
                str(options.processors_port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=run_env,
            start_new_session=True,
        )
    result: dict[str, Any] = {
        "benchmark": "soak",
        "date": datetime.now(UTC).isoformat(),
        "options": options.__dict__,
        "machine": machine(),
    }
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while "running (" not in run_log.read_text(errors="replace"):
            if run.poll() is not None or time.monotonic() > deadline:
                say(run_log.read_text(errors="replace")[-3000:])
                raise SystemExit("soak: `onoff-bridge run` did not come up")
            time.sleep(1)
        env = {**os.environ, **read_env(VAR / "stack.env")}
        started = time.monotonic()
        simulate = subprocess.Popen(
            [
                *bridge,
                "simulate",
                "--seed",
                str(options.seed),
                "--rate",
                str(options.rate),
                "--duration",
                str(options.duration_s),
                "--time-scale",
                str(options.time_scale),
                "--heavy-user-calls",
                str(options.heavy_user_calls),
                "--poison-calls",
                "--ledger",
                str(ledger),
                "--linger",
                str(options.linger_s),
                "--concurrency",
                str(options.concurrency),
                "--no-progress",
            ],
            env=env,
        )
        next_sample = started
        while simulate.poll() is None:
            if time.monotonic() >= next_sample:
                sample(soak, run_log, started)
                next_sample += SAMPLE_EVERY_S
            time.sleep(1)
        sent_s = time.monotonic() - started
        result["simulate_exit"] = simulate.returncode
        result["simulate_s"] = round(sent_s, 1)
        say(f"soak: simulate ended with {simulate.returncode} after {sent_s:.0f} s")
        sent = read_ledger(ledger)
        first_calls = [e for e in sent.events.values() if e.kind == "call"]
        result["deliveries_sent"] = len(sent.events)
        result["calls"] = len(first_calls)
        result["deliveries_per_s"] = round(len(sent.events) / sent_s, 1)
        result["calls_per_s"] = round(len(first_calls) / sent_s, 1)
        say(
            f"soak: {len(sent.events):,} deliveries ({len(first_calls):,} calls) in {sent_s:.0f} s:"
            f" {result['deliveries_per_s']}/s, {result['calls_per_s']} calls/s"
        )
        if simulate.returncode != 0:
            failures.append(f"simulate exited with {simulate.returncode}")

        # Caught up: the metrics worker has no lag on any partition, twice in a row.
        caught_up_at = None
        streak = 0
        deadline = time.monotonic() + options.catch_up_timeout_s
        while time.monotonic() < deadline:
            point = sample(soak, run_log, started)
            streak = streak + 1 if point["lag"]["metrics"] == 0 else 0
            if streak >= 2:
                caught_up_at = time.monotonic()
                break
            time.sleep(SAMPLE_EVERY_S)
        if caught_up_at is None:
            failures.append("the metrics worker did not catch up")
        else:
            result["metrics_caught_up_after_simulate_s"] = round(caught_up_at - started - sent_s, 1)
        result["max_metrics_lag"] = max((s["lag"]["metrics"] or 0) for s in soak.samples)

        verify = subprocess.run(
            [*bridge, "verify", "--ledger", str(ledger), "--timeout", "600"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        say(verify.stdout[-6000:] + verify.stderr[-3000:])
        result["verify_exit"] = verify.returncode
        result["verify_tail"] = verify.stdout.splitlines()[-20:]
        if verify.returncode != 0:
            failures.append("verify found mismatches")

        final = sample(soak, run_log, started)
        result["restarts"] = restarts(run_log)
        if run.poll() is not None:
            failures.append(f"`onoff-bridge run` exited with {run.returncode}")
        if final["ingress_readyz"] != 200:
            failures.append(f"ingress /readyz answered {final['ingress_readyz']}")
        for name, status in final["status"].items():
            if status != "ok":
                failures.append(f"{name} /healthz says {status}")
        if result["restarts"]:
            failures.append(f"{len(result['restarts'])} child restart(s)")
        largest, read = largest_window_record(
            env["ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS"],
            "onoff-bridge-metrics-metrics-windows-changelog",
        )
        result["largest_window_record_bytes"] = largest
        result["windows_changelog_records_read"] = read
        say(f"soak: the largest window record in the changelog: {largest} bytes ({read} read)")
    finally:
        if simulate is not None and simulate.poll() is None:
            simulate.terminate()
            simulate.wait(timeout=60)
        if run.poll() is None:
            run.send_signal(signal.SIGINT)  # as Ctrl-C: stops the children, then the stack
            try:
                run.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        # A worker still finishing a download from the stopped audio server can outlive
        # `run`; its process group is ours alone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    result["samples"] = soak.samples
    result["failures"] = failures
    result["finished_at"] = datetime.now(UTC).isoformat()
    path = save("soak", result)
    say(f"soak: {'FAILED: ' + '; '.join(failures) if failures else 'OK'}; results in {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    RESULTS.mkdir(exist_ok=True)
    sys.exit(main())

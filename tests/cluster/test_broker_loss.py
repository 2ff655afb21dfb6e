"""One broker SIGKILLed under a steady load and started again: nothing answered 200 is lost.

Onoff retries until it gets a 2xx, so the sender here does too. Every request
answered 200 must be in onoff.cdr.raw; dedupe and metrics keep going, onoff.calls
holds versions 1..n of each call without a gap, any repeated version identical,
and the metrics count every call once.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack.secure import SecureEndpoints, SecureStack
from schemas import SchemaName
from tests.cluster.helpers import (
    API_KEY,
    Layout,
    children,
    cli,
    client_env,
    decode,
    read_all,
    spawn,
    wait_until,
)
from tests.conftest import sample
from tests.integration.processor_fixtures import free_port

CALLS = 30
VERSIONS = 6
VICTIM = 2


class Sender(threading.Thread):
    """Sends VERSIONS changed deliveries of each call, one after the other, retrying each
    until it is answered 200; keeps the request id of every 200."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.prefix = prefix
        self.accepted: list[str] = []
        self.refused = 0
        self.sent = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        base = sample("cdr-answered-inbound.json")
        try:
            with httpx.Client(timeout=10, headers={"x-api-key": API_KEY}) as client:
                for version in range(VERSIONS):
                    for n in range(CALLS):
                        body = base | {"id": f"{self.prefix}-{n}", "callNotes": f"note {version}"}
                        self._deliver(client, body)
                        time.sleep(0.02)
        except BaseException as exc:
            self.failure = exc

    def _deliver(self, client: httpx.Client, body: dict[str, Any]) -> None:
        for _ in range(120):
            self.sent += 1
            try:
                response = client.post(self.url, json=body)
            except httpx.HTTPError:
                self.refused += 1
                time.sleep(0.5)
                continue
            if response.status_code == 200:
                self.accepted.append(response.headers["x-request-id"])
                return
            assert response.status_code == 503, response.text
            self.refused += 1
            time.sleep(0.5)
        raise AssertionError(f"{body['id']} was never accepted")


def test_a_killed_broker_loses_no_acknowledged_delivery_and_no_version(
    cluster: SecureEndpoints,
    stack: SecureStack,
    layout: Layout,
    stack_registry: SchemaRegistryClient,
    tmp_path: Path,
) -> None:
    topics = layout.topics
    env = client_env(cluster, layout, tmp_path)
    assert cli("topics", "apply", env=env).returncode == 0
    victim = stack.process(f"kafka-{VICTIM}")
    with children() as running:
        web_port, ingress_port = free_port(), free_port()
        dedupe = spawn(
            ["worker", "dedupe"],
            env | {"ONOFF_BRIDGE_WEB_PORT": str(web_port)},
            tmp_path / "dedupe.log",
            f"http://127.0.0.1:{web_port}/healthz",
        )
        ingress = spawn(
            ["ingress", "--port", str(ingress_port)],
            env,
            tmp_path / "ingress.log",
            f"http://127.0.0.1:{ingress_port}/readyz",
        )
        metrics_port = free_port()
        metrics = spawn(
            ["worker", "metrics"],
            env | {"ONOFF_BRIDGE_WEB_PORT": str(metrics_port)},
            tmp_path / "metrics.log",
            f"http://127.0.0.1:{metrics_port}/healthz",
        )
        running += [dedupe, metrics, ingress]
        for child in running:
            child.wait_healthy()
        sender = Sender(f"http://127.0.0.1:{ingress_port}/v1/onoff/cdr", layout.app_id_prefix)
        try:
            sender.start()
            assert wait_until(lambda: len(sender.accepted) >= CALLS, 60, 0.2)
            assert victim.kill()
            killed_at = len(sender.accepted)
            time.sleep(8)
            stack.start_broker(VICTIM)
            stack.wait_brokers()
        finally:
            sender.join(timeout=240)
        assert sender.failure is None, sender.failure
        assert not sender.is_alive()
        assert len(sender.accepted) == CALLS * VERSIONS
        assert killed_at < CALLS * VERSIONS, "the load ended before the broker was killed"

        config = cluster.kafka_config()
        raw = decode(
            stack_registry, SchemaName.CALL_EVENT, topics.cdr_raw, read_all(config, topics.cdr_raw)
        )
        stored = {record["ingest"]["requestId"] for record in raw}
        assert set(sender.accepted) <= stored, "a delivery answered 200 is not in the topic"

        def all_versions() -> list[dict[str, Any]]:
            found = decode(
                stack_registry, SchemaName.CALL, topics.calls, read_all(config, topics.calls)
            )
            top: dict[str, int] = defaultdict(int)
            for call in found:
                top[call["id"]] = max(top[call["id"]], call["version"])
            done = len(top) == CALLS and all(v == VERSIONS for v in top.values())
            return found if done else []

        calls = wait_until(all_versions, 120, 2)
        assert calls, "dedupe did not reach the last version of every call"
        by_version: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for call in calls:
            by_version[(call["id"], call["version"])].append(call)
        for n in range(CALLS):
            call_id = f"{layout.app_id_prefix}-{n}"
            versions = sorted(v for (c, v) in by_version if c == call_id)
            assert versions == list(range(1, VERSIONS + 1)), (call_id, versions)
        for copies in by_version.values():
            assert all(copy == copies[0] for copy in copies[1:]), "a repeated version differs"

        # Every call is the same user's, started in the same hour: one hour and one day
        # window, each counting every call once, through the loss of a replica of the
        # metrics tables' changelogs and of their internal topic.
        def final_windows() -> dict[str, dict[str, Any]]:
            latest: dict[str, dict[str, Any]] = {}
            for record in decode(
                stack_registry,
                SchemaName.USER_CALL_METRICS,
                topics.user_call_metrics,
                read_all(config, topics.user_call_metrics),
            ):
                latest[f"{record['granularity']}/{record['windowStart']}"] = record
            counted = [w["callsTotal"] for w in latest.values()]
            return latest if sorted(counted) == [CALLS, CALLS] else {}

        windows = wait_until(final_windows, 120, 2)
        assert windows, "the metrics did not count every call once"
        assert {w["granularity"] for w in windows.values()} == {"hour", "day"}
        assert all(w["answered"] == CALLS for w in windows.values())
        for child in running:
            assert child.process.poll() is None, child.tail()

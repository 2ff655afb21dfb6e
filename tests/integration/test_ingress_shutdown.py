"""SIGTERM: the ingress stops accepting, finishes what is in flight, flushes, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from schemas import SchemaName
from tests.conftest import sample
from tests.integration.ingress_fixtures import (
    CDR_PATH,
    read_topic,
    records_by_request_id,
    start_ingress,
)
from tests.integration.processor_fixtures import free_port

API_KEY = "shutdown-test-key"
REQUESTS = 300


async def post_all(url: str, process: subprocess.Popen[bytes]) -> dict[str, int | str]:
    """Posts REQUESTS bodies over 50 connections and sends SIGTERM while they run."""
    body = sample("cdr-answered-inbound.json")
    outcomes: dict[str, int | str] = {}
    a_third_answered = asyncio.Event()
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=15) as client:

        async def post(i: int) -> None:
            request_id = f"shutdown-{i}"
            headers = {"x-api-key": API_KEY, "x-request-id": request_id}
            try:
                response = await client.post(url, json=body | {"id": f"c-{i}"}, headers=headers)
                outcomes[request_id] = response.status_code
            except httpx.TransportError as exc:  # refused once the server stopped accepting
                outcomes[request_id] = type(exc).__name__
            if len(outcomes) >= REQUESTS // 3:
                a_third_answered.set()

        async def terminate() -> None:
            await a_third_answered.wait()
            process.send_signal(signal.SIGTERM)

        await asyncio.gather(terminate(), *(post(i) for i in range(REQUESTS)))
    return outcomes


def test_sigterm_finishes_in_flight_requests_and_exits_zero(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    tmp_path: Path,
) -> None:
    port = free_port()
    process = start_ingress(endpoints, topic_names, port, tmp_path / "ingress.log", API_KEY)
    try:
        outcomes = asyncio.run(post_all(f"http://127.0.0.1:{port}{CDR_PATH}", process))
        assert process.wait(timeout=30) == 0, (tmp_path / "ingress.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
    answered = {rid: status for rid, status in outcomes.items() if isinstance(status, int)}
    accepted = {rid for rid, status in answered.items() if status == 200}
    # Every request the server took got a real answer: 200, never a 5xx or a cut connection
    # mid-answer; the rest were refused before being read.
    assert set(answered.values()) == {200}, outcomes
    assert len(accepted) >= REQUESTS // 3
    stored = records_by_request_id(
        registry,
        SchemaName.CALL_EVENT,
        topic_names.cdr_raw,
        read_topic(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw),
    )
    assert accepted <= set(stored)
    refused = set(outcomes) - set(answered)
    print(f"\n{len(accepted)} answered 200 and stored; {len(refused)} refused after SIGTERM")

"""A client that sends a whole oversized body before reading still reads the 413.

Run against `onoff-bridge ingress` under uvicorn, over a raw socket, since the
test client has no socket to break.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.integration.ingress_fixtures import CDR_PATH, start_ingress, topic_size
from tests.integration.processor_fixtures import free_port

API_KEY = "drain-" + uuid.uuid4().hex
MAX_BODY = 64 * 1024


@pytest.fixture
def ingress_port(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> Iterator[int]:
    port = free_port()
    process = start_ingress(
        endpoints,
        topic_names,
        port,
        tmp_path / "ingress.log",
        API_KEY,
        extra_env={
            "ONOFF_BRIDGE_MAX_BODY_BYTES": str(MAX_BODY),
            "ONOFF_BRIDGE_OVERSIZED_DRAIN_BYTES": str(4 * 1024 * 1024),
        },
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _send_all_then_read(port: int, size: int, chunked: bool) -> bytes:
    body = b'{"id": "' + b"x" * size + b'"}'
    if chunked:
        head = f"POST {CDR_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        head = f"POST {CDR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        payload = body
    request = (head + f"x-api-key: {API_KEY}\r\ncontent-type: application/json\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request + payload)  # all of it, before reading a byte
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_2_mib_body_sent_at_once_reads_the_413(
    chunked: bool, ingress_port: int, endpoints: StackEndpoints, topic_names: TopicNames
) -> None:
    answer = _send_all_then_read(ingress_port, 2 * 1024 * 1024, chunked)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == 0


def test_a_body_past_the_drain_bound_is_refused_without_reading_it(ingress_port: int) -> None:
    # Declared far beyond limit + drain: answered from the headers; the client may then see
    # a reset, which is allowed past the bound, but whatever it reads first is the 413.
    request = (
        f"POST {CDR_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {64 * 1024 * 1024}\r\n"
        f"x-api-key: {API_KEY}\r\ncontent-type: application/json\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", ingress_port), timeout=30) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

"""The sender's retry rule against a real local HTTP server that fails a set number of times."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from onoff_bridge.simulation.sender import Attempt, SendOutcome, WebhookSender


class FailingServer:
    """Answers `failures` times with `status` (or stalls, for status 0), then 200 {}."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.requests: list[tuple[str, bytes, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                server.requests.append((self.path, body, self.headers.get("x-api-key")))
                failing = len(server.requests) <= server.failures
                if failing and server.status == 0:
                    time.sleep(0.5)
                status = server.status if failing and server.status else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[type[FailingServer]]:
    started: list[FailingServer] = []

    class Started(FailingServer):
        def __init__(self, failures: int, status: int = 503) -> None:
            super().__init__(failures, status)
            threading.Thread(target=self.http.serve_forever, daemon=True).start()
            started.append(self)

    yield Started
    for server in started:
        server.http.shutdown()
        server.http.server_close()


def _send(server: FailingServer, timeout_s: float = 5.0) -> tuple[SendOutcome, list[Attempt]]:
    heard: list[Attempt] = []

    async def go() -> SendOutcome:
        async with httpx.AsyncClient(trust_env=False) as client:
            sender = WebhookSender(
                client, server.url, "k-1", retry_delay_s=0.01, timeout_s=timeout_s
            )
            return await sender.send("/v1/onoff/cdr", b'{"id":"1"}', heard.append)

    return asyncio.run(go()), heard


def test_a_first_success_is_sent_once(serve) -> None:
    server = serve(0)
    outcome, heard = _send(server)
    assert outcome.delivered and [a.status for a in heard] == [200]
    assert server.requests == [("/v1/onoff/cdr", b'{"id":"1"}', "k-1")]


@pytest.mark.parametrize("status", [503, 401, 422])
def test_four_failures_then_success_is_delivered_on_the_fifth_try(serve, status: int) -> None:
    server = serve(4, status)
    outcome, heard = _send(server)
    assert outcome.delivered
    assert [a.status for a in heard] == [status] * 4 + [200]
    assert len({body for _, body, _ in server.requests}) == 1  # retries re-send the same bytes


def test_five_failures_give_up_for_good(serve) -> None:
    server = serve(5)
    outcome, heard = _send(server)
    assert not outcome.delivered
    assert [a.number for a in heard] == [1, 2, 3, 4, 5]
    assert outcome.last_failure == "503"
    time.sleep(0.1)
    assert len(server.requests) == 5


def test_timeouts_count_as_failures(serve) -> None:
    server = serve(2, status=0)
    outcome, heard = _send(server, timeout_s=0.2)
    assert outcome.delivered
    assert [a.status for a in heard] == [None, None, 200]
    assert heard[0].error is not None and heard[0].error.startswith("timeout")

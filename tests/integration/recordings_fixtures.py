"""A real HTTP server on 127.0.0.1 serving audio the ways the recordings processor meets it.

Paths (the query string is ignored, so tests can add their own `?sig=...`):

    /audio/<name>.mp3             200 audio/mpeg, `size` bytes (default 64 KiB)
    /slow/<name>.mp3              200, the body in 10 chunks spread over `seconds`
    /big/<name>.mp3               200 with no Content-Length, `size` bytes
    /status/<code>/<name>         that status code
    /flaky/<name>.mp3             500 for the first `failures` requests, then 200 audio
    /html/<name>                  200 text/html
    /redirect/<name>?to=<url>     302 to `to`

Each request is counted by path and its Host header kept, so tests can say
how often (and how) the processor asked.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from confluent_kafka import Producer

from processors.recordings.processor import record_key
from schemas import AvroCodec
from tests.integration.ingress_fixtures import read_topic


def payload(name: str, size: int = 64 * 1024) -> bytes:
    block = hashlib.sha256(name.encode()).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


class AudioServer:
    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.hosts: dict[str, list[str]] = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits[path]

    def wait_for(self, path: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(path) == 0:
            assert time.monotonic() < deadline, f"nobody asked for {path}"
            time.sleep(0.05)


def _handler(server: AudioServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            with server.lock:
                server.hits[path] += 1
                hit = server.hits[path]
                server.hosts[path].append(self.headers.get("Host", ""))
            kind, _, rest = path.strip("/").partition("/")
            size = int(query.get("size", 64 * 1024))
            try:
                if kind == "audio":
                    self._send(200, "audio/mpeg", payload(rest, size))
                elif kind == "slow":
                    self._slow(payload(rest, size), float(query.get("seconds", "2")))
                elif kind == "big":
                    self._unsized(payload(rest, size))
                elif kind == "status":
                    code, _, _ = rest.partition("/")
                    self._send(int(code), "text/plain", b"no")
                elif kind == "flaky":
                    if hit <= int(query.get("failures", "1")):
                        self._send(500, "text/plain", b"try again")
                    else:
                        self._send(200, "audio/mpeg", payload(rest, size))
                elif kind == "html":
                    self._send(200, "text/html; charset=utf-8", b"<html>login</html>")
                elif kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", query["to"])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(400, "text/plain", b"unknown path")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed worker, a refused body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _slow(self, body: bytes, seconds: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 10 + 1
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                time.sleep(seconds / 10)

        def _unsized(self, body: bytes) -> None:
            # HTTP/1.0 without Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.end_headers()
            for start in range(0, len(body), 65536):
                self.wfile.write(body[start : start + 65536])

    return Handler


@contextlib.contextmanager
def audio_server() -> Iterator[AudioServer]:
    server = AudioServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def stored_objects(root: Path) -> list[Path]:
    """Every file under `root` but the spool of temp files."""
    return sorted(
        p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.relative_to(root).parts
    )


def spooled(root: Path) -> list[Path]:
    incoming = root / ".incoming"
    return sorted(incoming.iterdir()) if incoming.is_dir() else []


T0 = datetime(2026, 3, 2, 9, 21, 41, tzinfo=UTC)


def call_record(
    call_id: str,
    version: int = 1,
    recordings: Sequence[str] = (),
    voicemails: Sequence[str] = (),
) -> dict[str, Any]:
    """A `Call` as dedupe writes it, with just what the recordings processor reads."""
    return {
        "id": call_id,
        "version": version,
        "eventKinds": ["RECORDING"] if recordings else ["VM"],
        "callStarted": T0,
        "callRecordingUrls": sorted(recordings),
        "voicemailUrls": sorted(voicemails),
        "deliveryCount": version,
        "firstSeenAt": T0,
        "lastUpdatedAt": T0,
    }


def produce_calls(bootstrap_servers: str, codec: AvroCodec, calls: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for call in calls:
        producer.produce(codec.topic, key=call["id"].encode(), value=codec.encode(call))
    assert producer.flush(30) == 0


def read_recordings(
    bootstrap_servers: str, codec: AvroCodec, count: int, timeout_s: float = 60.0
) -> list[tuple[str, dict[str, Any]]]:
    """(key, record) of every record in the recordings topic, once at least `count` arrived."""
    deadline = time.monotonic() + timeout_s
    while True:
        messages = read_topic(bootstrap_servers, codec.topic, timeout_s=5)
        if len(messages) >= count or time.monotonic() > deadline:
            return [((m.key() or b"").decode(), codec.decode(m.value() or b"")) for m in messages]
        time.sleep(0.5)


def read_recordings_until(
    bootstrap_servers: str,
    codec: AvroCodec,
    sentinel: str,
    timeout_s: float = 60.0,
    expected: Iterable[str] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """Every record in the recordings topic once one keyed `sentinel` arrived.

    The sentinel is produced after whatever must not appear, on the same call
    (so the same partition and lane): once it is there, anything earlier is too.
    It says nothing of other calls, which sit on other partitions: keys in
    `expected` are waited for as well.
    """
    wanted = {sentinel, *expected}
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_recordings(bootstrap_servers, codec, count=0)
        missing = wanted - {key for key, _ in records}
        if not missing:
            return records
        assert time.monotonic() < deadline, f"no {sorted(missing)} in {[k for k, _ in records]}"
        time.sleep(0.5)


def by_link(
    records: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Records by (call id, kind, source URL); each must have come once, under its own key."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, record in records:
        link = (record["callId"], record["kind"], record["sourceUrl"])
        assert link not in found, f"{link} reported twice"
        assert key == record_key(*link), key
        found[link] = record
    return found

"""The recording and voicemail audio of a run, served on 127.0.0.1 the way Onoff's links behave.

Each link's bytes follow from its path alone, so `verify` can recompute the
sha256 of what the recordings worker should have stored. A link's behaviour is
in its path (`/audio/<ok|expired|flaky>/<call id>/<kind>.<ext>`): expired
links answer 404 or 410, flaky ones 503 the first time and the audio after.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from onoff_bridge.simulation.traffic import AudioLink, LinkBehaviour


def audio_bytes(path: str) -> bytes:
    """Deterministic audio-like bytes for a link path: 2 to 8 KiB with a format header."""
    digest = hashlib.sha256(path.encode()).digest()
    size = 2048 + int.from_bytes(digest[:2], "big") % 6144
    header = b"RIFF\x00\x00\x00\x00WAVEfmt " if path.endswith(".wav") else b"ID3\x04\x00\x00"
    blocks = [header]
    counter = 0
    while sum(map(len, blocks)) < size:
        blocks.append(hashlib.sha256(digest + counter.to_bytes(4, "big")).digest())
        counter += 1
    return b"".join(blocks)[:size]


def audio_sha256(path: str) -> str:
    return hashlib.sha256(audio_bytes(path)).hexdigest()


def content_type(path: str) -> str:
    return "audio/wav" if path.endswith(".wav") else "audio/mpeg"


def expired_status(path: str) -> int:
    """404 or 410, fixed per link: Onoff's storage may answer either once a link is gone."""
    return 410 if hashlib.sha256(path.encode()).digest()[0] % 2 else 404


class AudioServer:
    """A threaded HTTP server on a random loopback port; counts the requests per path."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def hit(self, path: str) -> int:
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]

    def fetched(self, link: AudioLink) -> bool:
        """Whether the link was asked for as often as it takes to get its final answer."""
        return self.count(link.path) >= (2 if link.behaviour is LinkBehaviour.FLAKY else 1)

    def wait_fetched(self, links: Iterable[AudioLink], timeout_s: float) -> list[AudioLink]:
        """Waits until every link was fetched or the timeout passed; answers those left."""
        waiting = list(links)
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [link for link in waiting if not self.fetched(link)]
            if not waiting or time.monotonic() >= deadline:
                return waiting
            time.sleep(0.2)


def _handler(server: AudioServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the links carry call ids."""

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            parts = path.split("/")
            if len(parts) != 5 or parts[1] != "audio":
                self._send(404, "text/plain", b"not found")
                return
            attempt = server.hit(path)
            behaviour = parts[2]
            if behaviour == LinkBehaviour.EXPIRED.value:
                self._send(expired_status(path), "text/plain", b"link expired")
            elif behaviour == LinkBehaviour.FLAKY.value and attempt == 1:
                self._send(503, "text/plain", b"try again")
            elif behaviour in {b.value for b in LinkBehaviour}:
                self._send(200, content_type(path), audio_bytes(path))
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serving_audio() -> Iterator[AudioServer]:
    server = AudioServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()

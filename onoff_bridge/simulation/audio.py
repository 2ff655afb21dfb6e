"""The recording and voicemail audio of a run, served on 127.0.0.1 the way Onoff's links behave.

Each link's bytes follow from its path alone, so `verify` can recompute the
sha256 of what the recordings worker should have stored. A link's behaviour is
in its path (`/audio/<ok|expired|flaky>/<call id>/<kind>.<ext>`): expired
links answer 404 or 410, flaky ones 503 the first time and the audio after.

`AudioFaults` makes the whole server unreliable on top of that, for the fault
tests: every answer comes late, and a share of requests (any link) fail with a
500, a 503 or a body cut off halfway, decided by a seeded generator.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from onoff_bridge.simulation.traffic import AudioLink, LinkBehaviour

# What an injected failure does, in turn: a 5xx the fetcher must retry, or a 200 whose
# body stops halfway, which it must neither store nor count as done.
FAILURES = ("500", "503", "cut")


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


@dataclass(frozen=True)
class AudioFaults:
    """A slow, unreliable recording server: off unless a share or a delay is set."""

    failure_share: float = 0.0  # of all requests: 500, 503 or a body cut off halfway
    delay_s: float = 0.0  # each answer waits between half of this and all of it
    seed: int = 0


class AudioServer:
    """A threaded HTTP server on a random loopback port; counts requests and answers."""

    def __init__(self, faults: AudioFaults | None = None, port: int = 0) -> None:
        self.faults = faults or AudioFaults()
        self.requests: Counter[str] = Counter()  # per path, whatever the answer
        self.answers: Counter[str] = Counter()  # per outcome: "200", "404", "cut", ...
        self._final: Counter[str] = Counter()  # per path: audio served whole, or expired
        self._lock = threading.Lock()
        self._random = random.Random(self.faults.seed)  # noqa: S311 - reproducible faults
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
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
        """Counts a request that reached the link's own behaviour; answers which one it is."""
        with self._lock:
            self.requests[path] += 1
            return self.requests[path]

    def injected(self) -> tuple[float, str | None]:
        """The delay of this answer, and the failure to give instead of it, if any."""
        faults = self.faults
        with self._lock:
            delay = self._random.uniform(faults.delay_s / 2, faults.delay_s)
            if self._random.random() < faults.failure_share:
                return delay, self._random.choice(FAILURES)
        return delay, None

    def answered(self, path: str | None, outcome: str, final: bool) -> None:
        with self._lock:
            self.answers[outcome] += 1
            if final and path is not None:
                self._final[path] += 1

    def fetched(self, link: AudioLink) -> bool:
        """Whether the link got its final answer once: the whole audio, or 404/410 if expired."""
        with self._lock:
            return self._final[link.path] > 0

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
            behaviours = {b.value for b in LinkBehaviour}
            if len(parts) != 5 or parts[1] != "audio" or parts[2] not in behaviours:
                self._send(None, 404, "text/plain", b"not found")
                return
            delay, failure = server.injected()
            if delay:
                time.sleep(delay)
            if failure == "cut":
                self._cut(path)
                return
            if failure is not None:
                self._send(None, int(failure), "text/plain", b"injected failure")
                return
            attempt = server.hit(path)
            behaviour = parts[2]
            if behaviour == LinkBehaviour.EXPIRED.value:
                self._send(path, expired_status(path), "text/plain", b"link expired", final=True)
            elif behaviour == LinkBehaviour.FLAKY.value and attempt == 1:
                self._send(path, 503, "text/plain", b"try again")
            else:
                self._send(path, 200, content_type(path), audio_bytes(path), final=True)

        def _send(
            self, path: str | None, status: int, kind: str, body: bytes, final: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            server.answered(path, str(status), final)

        def _cut(self, path: str) -> None:
            """A 200 that promises the whole audio and closes the connection halfway."""
            body = audio_bytes(path)
            self.send_response(200)
            self.send_header("Content-Type", content_type(path))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            server.answered(None, "cut", False)

    return Handler


@contextmanager
def serving_audio(faults: AudioFaults | None = None, port: int = 0) -> Iterator[AudioServer]:
    server = AudioServer(faults, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()

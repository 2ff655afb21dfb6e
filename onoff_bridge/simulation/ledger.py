"""The simulator's ledger: one JSON object per line for everything it sent, heard and gave up on.

Line types (`type`):

- `run`: the seed, options, ingress and audio server of the run;
- `audio`: a link, its call and kind, whether it expires, and the sha256 and
  size of the audio it serves;
- `event`: a delivery as first sent: sequence number, id, kind, path, the
  sha256 of the exact bytes sent (`bodySha256`), the ingress's canonical hash
  of it (`contentSha256`, what `ingest.contentSha256` holds) and the body;
- `answer`: one attempt's outcome: HTTP status, or the error for a timeout,
  and when it came (`at`, Unix time, so an answer can be set against a fault);
- `gave_up`: a delivery whose every attempt failed, which Onoff would drop;
- `done`: the totals at the end.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ingress.webhooks import content_sha256
from onoff_bridge.simulation import LedgerError
from onoff_bridge.simulation.audio import audio_bytes
from onoff_bridge.simulation.traffic import AudioLink, Delivery, LinkBehaviour


class LedgerWriter:
    """Appends ledger lines and flushes each, so a run cut short still leaves a usable ledger."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, entry: Mapping[str, Any]) -> None:
        self._out.write(orjson.dumps(entry) + b"\n")
        self._out.flush()

    def run(self, **fields: Any) -> None:
        self.write({"type": "run", **fields})

    def audio(self, link: AudioLink) -> None:
        data = audio_bytes(link.path)
        self.write(
            {
                "type": "audio",
                "url": link.url,
                "path": link.path,
                "callId": link.call_id,
                "kind": link.kind,
                "behaviour": link.behaviour.value,
                "expires": link.behaviour is LinkBehaviour.EXPIRED,
                "sha256": hashlib.sha256(data).hexdigest(),
                "sizeBytes": len(data),
            }
        )

    def event(self, delivery: Delivery, sent: bytes) -> None:
        self.write(
            {
                "type": "event",
                "seq": delivery.seq,
                "id": delivery.id,
                "kind": delivery.kind.value,
                "path": delivery.path,
                "dueS": delivery.due_s,
                "bodySha256": hashlib.sha256(sent).hexdigest(),
                "contentSha256": content_sha256(orjson.loads(sent)),
                "body": delivery.body,
            }
        )

    def answer(
        self,
        delivery: Delivery,
        attempt: int,
        status: int | None,
        error: str | None,
        quarantined: bool,
        elapsed_ms: float,
    ) -> None:
        self.write(
            {
                "type": "answer",
                "seq": delivery.seq,
                "id": delivery.id,
                "attempt": attempt,
                "status": status,
                "error": error,
                "quarantined": quarantined,
                "elapsedMs": round(elapsed_ms, 1),
                "at": round(time.time(), 3),
            }
        )

    def gave_up(self, delivery: Delivery, attempts: int, last: str) -> None:
        self.write(
            {"type": "gave_up", "seq": delivery.seq, "id": delivery.id, "attempts": attempts}
            | {"last": last}
        )

    def done(self, **totals: Any) -> None:
        self.write({"type": "done", **totals})


@contextmanager
def open_ledger(path: Path) -> Iterator[LedgerWriter]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        yield LedgerWriter(out)


@dataclass(frozen=True)
class LedgerEvent:
    seq: int
    id: str
    kind: str
    path: str
    content_sha256: str
    body_sha256: str
    body: dict[str, Any]


@dataclass
class Ledger:
    """A ledger read back: what verify checks the topics against."""

    run: dict[str, Any] = field(default_factory=dict)
    events: dict[int, LedgerEvent] = field(default_factory=dict)
    answers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    gave_up: dict[int, dict[str, Any]] = field(default_factory=dict)
    audio: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None

    def accepted(self, seq: int) -> bool:
        """Answered 200 (any 2xx) at least once and not quarantined: it must be in its topic."""
        return any(
            a["status"] is not None and 200 <= a["status"] < 300 and not a["quarantined"]
            for a in self.answers.get(seq, [])
        )

    def quarantined(self, seq: int) -> bool:
        return any(a["quarantined"] for a in self.answers.get(seq, []))


def read_ledger(path: Path) -> Ledger:
    ledger = Ledger()
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            kind = entry["type"]
            if kind == "run":
                ledger.run = entry
            elif kind == "audio":
                ledger.audio.append(entry)
            elif kind == "event":
                ledger.events[entry["seq"]] = LedgerEvent(
                    entry["seq"],
                    entry["id"],
                    entry["kind"],
                    entry["path"],
                    entry["contentSha256"],
                    entry["bodySha256"],
                    entry["body"],
                )
            elif kind == "answer":
                ledger.answers.setdefault(entry["seq"], []).append(entry)
            elif kind == "gave_up":
                ledger.gave_up[entry["seq"]] = entry
            elif kind == "done":
                ledger.done = entry
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise LedgerError(f"{path}:{number}: not a ledger line ({exc!r})") from exc
    return ledger

"""Recordings: onoff.calls -> object storage + onoff.recordings, each link fetched once.

For every call version, each (kind, URL) not yet handled is downloaded,
stored, and reported as one `Recording` record, keyed by `record_key`
(`<call id>/<kind>/<link digest>`), so compaction keeps one record per link.
"Handled" lives in a Faust table keyed by call id, backed by its own
compacted changelog, holding a digest of each (kind, URL) whose record Kafka
has acknowledged. The table is written only after that acknowledgement, and
a call version's offset is acked only after its table writes (Faust flushes
the producer before committing offsets). So after a crash:

- before the record was acknowledged: the version is read again, the link is
  not in the table, it is downloaded again; the object name is its content's
  hash, so the store ends with the same single object;
- after the record but before the table write reached Kafka: the record is
  sent a second time, identical but for `fetchedAt`; the compacted topic
  keeps one `stored` record for the key.

Concurrency: see `ordering.py`. Versions of one call run in order, calls run
in parallel, at most `concurrency` downloads at once per worker.

Expiry: each entry keeps the lastUpdatedAt of the call version that last added
a link (never earlier than callStarted), and a timer forgets calls whose entry
is older than the retention on event time (the latest lastUpdatedAt read), with
a tombstone in the changelog. The retention is longer than dedupe's, which
refuses deliveries for calls started before it, so a forgotten call gets no new
version and no link is fetched twice.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from datetime import UTC, date, datetime
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.types import EventT, StreamT

from processors.codecs import UTF8
from processors.deadletter import DeadLetters
from processors.expiry import expire_entries
from processors.progress import ProgressTracker
from processors.recordings.archive import RecordingArchiver
from processors.recordings.fetch import redact
from processors.recordings.metrics import RecordingMetrics
from processors.recordings.ordering import Lanes, OrderedAcks, Ticket
from processors.recordings.settings import RecordingSettings
from processors.records import EventClock, decode_with_retry, to_millis
from schemas import AvroCodec, RecordDecodeError

log = logging.getLogger(__name__)

NAME = "recordings"
# How often a download in flight tells /healthz that its partition is not stalled.
HEARTBEAT_S = 5.0
# Recording kind -> the Call field listing its links.
KINDS = {"recording": "callRecordingUrls", "voicemail": "voicemailUrls"}


def marks_of(entry: Any) -> list[str]:
    """The handled marks of a table entry (a bare list before entries kept their age)."""
    if entry is None:
        return []
    return list(entry["m"] if isinstance(entry, dict) else entry)


def link_digest(url: str) -> str:
    """A link's name that is stable across restarts and says nothing of its signed query."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def link_mark(kind: str, url: str) -> str:
    """What the table keeps of a handled link: its kind and digest, not the signed URL."""
    return f"{kind}:{link_digest(url)}"


def record_key(call_id: str, kind: str, url: str) -> str:
    """`<call id>/<kind>/<link digest>`: every (call, kind, link) keeps its own record.

    Keyed by the call and kind alone, a call with two recording links lost the
    first link's record to compaction. Consumers find all of a call's records by
    the prefix `<call id>/` (or, exactly, by the `callId` field).
    """
    return f"{call_id}/{kind}/{link_digest(url)}"


class RecordingsProcessor:
    def __init__(
        self,
        app: faust.App,
        *,
        settings: RecordingSettings,
        calls_topic: str,
        recordings_topic: str,
        partitions: int,
        calls: AvroCodec,
        recordings: AvroCodec,
        deadletters: DeadLetters,
        progress: ProgressTracker,
        metrics: RecordingMetrics,
        archiver: RecordingArchiver,
    ) -> None:
        self._settings = settings
        self._calls = calls
        self._recordings = recordings
        self._deadletters = deadletters
        self._progress = progress
        self._metrics = metrics
        self._archiver = archiver
        self.source = app.topic(
            calls_topic, key_serializer="raw", value_serializer="raw", internal=False
        )
        self._out = app.topic(recordings_topic, key_serializer="raw", value_serializer="raw")
        # Changelog partitions must equal the source's: a table write goes to the
        # partition of the event being handled. The topic is declared here, not left
        # to Faust, so recovery decodes it with the same codecs as the writes.
        changelog = app.topic(
            f"{app.conf.id}-{NAME}-handled-changelog",
            partitions=partitions,
            compacting=True,
            internal=True,
            key_serializer=UTF8,
            value_serializer="json",
            allow_empty=True,
        )
        self.handled = cast(
            Table[str, Any],
            app.Table(f"{NAME}-handled", partitions=partitions, changelog_topic=changelog),
        )
        # Faust derives these from key_type/value_type; changelog writes use them.
        self.handled.key_serializer = UTF8
        self.handled.value_serializer = "json"
        self.app = app
        self.retention_ms = int(settings.retention_days * 24 * 3600 * 1000)
        # Event time: the latest lastUpdatedAt read by this worker.
        self.clock = EventClock()
        metrics.handled_calls.set_function(lambda: len(self.handled.data))
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._window = asyncio.Semaphore(settings.max_pending_calls)
        self._lanes = Lanes()
        self.acks: OrderedAcks | None = None
        app.on_partitions_revoked.connect(self._on_revoked)
        app.agent(self.source, name=f"{NAME}-agent")(self._run)

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # The new owner reads these partitions again from the committed offset.
        if self.acks is not None:
            for tp in kwargs.get("revoked", args[0] if args else ()):
                self.acks.forget(tp.topic, tp.partition)

    async def _run(self, stream: StreamT[Any]) -> None:
        manual: Any = cast(Any, stream).noack()  # missing from faust's StreamT stubs
        acks = self.acks = OrderedAcks(manual.ack)
        self._metrics.queued_acks.set_function(acks.queued)
        async for event in manual.events():
            # Backpressure: stop reading while too many versions wait behind downloads.
            await self._window.acquire()
            self._metrics.pending_calls.inc()
            ticket = acks.enter(event)
            lane = (event.key or b"").decode(errors="replace")
            self._lanes.submit(lane, functools.partial(self._complete, ticket, acks))

    async def _complete(self, ticket: Ticket, acks: OrderedAcks) -> None:
        message = ticket.event.message
        # A download may outlast the stall timeout; its own deadlines bound it.
        heartbeat = asyncio.create_task(self._working(message.topic, message.partition))
        try:
            ticket.outcome = await self.handle(ticket.event)
        except Exception:
            # Left unacked: the committed offset stops here, /healthz reports the stall,
            # and the restarted worker reads this version again. Nothing behind it in
            # the partition can be acked either, so it is not kept waiting (see ordering).
            acks.fail(ticket)
            log.exception(
                "recordings: cannot finish a call version; its offset stays uncommitted",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                },
            )
            return
        finally:
            heartbeat.cancel()
            self._window.release()
            self._metrics.pending_calls.dec()
        for done in await acks.finish(ticket):
            m = done.event.message
            self._progress.processed(NAME, done.outcome, m.topic, m.partition, m.offset)

    async def _working(self, topic: str, partition: int) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._progress.working(topic, partition)

    async def handle(self, event: EventT[Any]) -> str:
        """Handles one call version; returns the outcome counted in the progress metrics."""
        message = event.message
        try:
            call = await decode_with_retry(self._calls, message.value)
        except RecordDecodeError as exc:
            await self._reject(message, str(exc))
            return "deadlettered"
        self.clock.advance(call["lastUpdatedAt"])
        handled = set(marks_of(self.handled.get(call["id"])))
        links: dict[str, tuple[str, str]] = {}
        for kind, field in KINDS.items():
            for url in call.get(field) or ():
                mark = link_mark(kind, url)
                if mark not in handled:
                    links[mark] = (kind, url)
        if not links:
            return "nothing_new"
        results = await asyncio.gather(
            *(
                self._handle_link(call, kind, url, message.partition)
                for kind, url in links.values()
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return "fetched"

    async def _handle_link(self, call: dict[str, Any], kind: str, url: str, partition: int) -> None:
        async with self._slots:
            self._metrics.in_flight.inc()
            started = time.monotonic()
            try:
                record = await self._fetch_and_store(call, kind, url)
            finally:
                self._metrics.in_flight.dec()
        status = record["status"]
        self._metrics.downloads.labels(status).inc()
        self._metrics.duration.labels(status).observe(time.monotonic() - started)
        if record["sizeBytes"] is not None:
            self._metrics.bytes.inc(record["sizeBytes"])
        value = self._recordings.encode(record)
        delivered = await self._out.send(
            key=record_key(call["id"], kind, url).encode(), value=value
        )
        await delivered  # acknowledged by every in-sync replica (producer_acks=-1)
        # Only now does the link count as handled (see the module docstring).
        current = marks_of(self.handled.get(call["id"]))
        mark = link_mark(kind, url)
        if mark not in current:
            # The partition is kept so the expiry timer can write the tombstone there.
            self.handled[call["id"]] = {
                "m": sorted([*current, mark]),
                "t": to_millis(call["lastUpdatedAt"]),
                "p": partition,
            }
        log.info(
            "recording %s",
            status,
            extra={
                "call_id": call["id"],
                "kind": kind,
                "url": redact(url),
                "status": status,
                "error": record["error"],
                "storage_uri": record["storageUri"],
            },
        )

    async def _fetch_and_store(self, call: dict[str, Any], kind: str, url: str) -> dict[str, Any]:
        fetched_at = datetime.now(UTC)
        result = await self._archiver.archive(call["id"], kind, url, _call_day(call))
        return {
            "callId": call["id"],
            "kind": kind,
            "sourceUrl": url,
            "callVersion": call["version"],
            "status": result.status,
            "storageUri": result.storage_uri,
            "sha256": result.sha256,
            "sizeBytes": result.size,
            "contentType": result.content_type,
            "error": result.error,
            "fetchedAt": fetched_at,
        }

    def expire(self) -> int:
        """Forgets calls last updated before the retention; returns how many."""
        if not self.clock.started:
            return 0
        horizon_ms = self.clock.ms - self.retention_ms
        return expire_entries(self.app, self.handled, lambda _key, entry: entry["t"] < horizon_ms)

    async def _reject(self, message: Any, reason: str) -> None:
        await self._deadletters.reject(NAME, message, reason)


def _call_day(call: dict[str, Any]) -> date:
    """The day in object names: the call's, so a repeated download lands on the same name."""
    when: datetime = call.get("callStarted") or call["firstSeenAt"]
    return when.astimezone(UTC).date()

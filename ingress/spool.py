"""A write-ahead spool on local disk: where a delivery waits while Kafka cannot take it.

The sender gives up on an event after five tries (`onoff-webhook.md`), so an
outage longer than its retry span would lose events the ingress had in hand.
With a spool, a record Kafka does not acknowledge in time is appended here,
fsynced, and only then answered 200; `Spool.drain` sends the records to Kafka
in the order they were spooled and deletes a segment once every record in it
is acknowledged.

Layout of one spool directory (each ingress process claims its own, see
`claim_directory`):

    lock                      flock'd by the process that owns the directory
    00000000000000000001.seg  records, appended; a new segment every `segment_bytes`
    drained                   how far the drain got: "<segment> <byte offset>"

A record on disk is `length (4 bytes) | crc32 (4 bytes) | payload`, the payload
holding the spooled-at time, topic, key, value format and value. A torn last
record (power lost mid-write) fails its length or checksum when the spool is
opened: it is cut off with a log line, and everything before it drains.

Group commit: appends write to the page cache on the event loop and then wait
for an fsync that one thread runs for every append made so far, so one fsync
covers the requests of a few milliseconds instead of one each.

The drain is at-least-once: a record sent but not yet recorded as drained when
the process dies is sent again after a restart. Dedupe drops the repeat (the
same delivery hash), so `onoff.calls` is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")  # payload length, crc32 of the payload
_STAMP = struct.Struct(">Q")
_SHORT = struct.Struct(">H")
_LONG = struct.Struct(">I")
MAX_RECORD_BYTES = 64 * 1024 * 1024
SEGMENT_SUFFIX = ".seg"
DRAINED_FILE = "drained"
READ_CHUNK_BYTES = 4 * 1024 * 1024
WORKER_PREFIX = "worker-"


class SpoolFullError(Exception):
    """The spool is at its size cap: the caller answers 503 as if there were no spool."""


class SpoolClosedError(Exception):
    """The spool was closed; nothing more is appended."""


@dataclass(frozen=True)
class SpooledRecord:
    topic: str
    key: str
    # What `value` holds, e.g. "avro" (framed, ready to send) or the name of a schema whose
    # JSON record waits for the registry. The spool does not interpret it.
    value_format: str
    value: bytes
    spooled_at_ms: int


def encode_record(record: SpooledRecord) -> bytes:
    parts = [_STAMP.pack(record.spooled_at_ms)]
    for text in (record.topic, record.key, record.value_format):
        raw = text.encode()
        parts += [_SHORT.pack(len(raw)), raw]
    parts += [_LONG.pack(len(record.value)), record.value]
    payload = b"".join(parts)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> SpooledRecord:
    (stamp,) = _STAMP.unpack_from(payload, 0)
    at = _STAMP.size
    texts: list[str] = []
    for _ in range(3):
        (size,) = _SHORT.unpack_from(payload, at)
        at += _SHORT.size
        texts.append(payload[at : at + size].decode())
        at += size
    (size,) = _LONG.unpack_from(payload, at)
    at += _LONG.size
    value = payload[at : at + size]
    if len(value) != size:
        raise ValueError("value shorter than its length")
    return SpooledRecord(texts[0], texts[1], texts[2], value, stamp)


def read_frames(data: bytes, start: int = 0) -> Iterator[tuple[int, int, SpooledRecord]]:
    """(offset, end, record) of each whole record from `start`; stops at the first torn one."""
    at = start
    while at + _FRAME.size <= len(data):
        size, crc = _FRAME.unpack_from(data, at)
        end = at + _FRAME.size + size
        if size > MAX_RECORD_BYTES or end > len(data):
            return
        payload = data[at + _FRAME.size : end]
        if zlib.crc32(payload) != crc:
            return
        try:
            record = decode_payload(payload)
        except (ValueError, struct.error, UnicodeDecodeError):
            return
        yield at, end, record
        at = end


def list_segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


def claim_directory(root: Path, slots: int = 64) -> tuple[Path, int]:
    """The first `root/worker-N` no live process holds, locked for this one; its lock fd.

    A restarted process takes a slot back with whatever its predecessor left in
    it, so no spooled record is orphaned by a new process id.
    """
    root.mkdir(parents=True, exist_ok=True)
    for slot in range(slots):
        directory = root / f"{WORKER_PREFIX}{slot}"
        directory.mkdir(exist_ok=True)
        fd = lock_directory(directory)
        if fd is not None:
            return directory, fd
    raise RuntimeError(f"all {slots} spool directories under {root} are in use")


def lock_directory(directory: Path) -> int | None:
    """The fd holding `directory`'s lock, or None while a live process holds it.

    flock is released by the kernel when its holder dies, however it dies, so a
    lock that can be taken means the directory's owner is gone.
    """
    fd = os.open(directory / "lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def spool_directories(root: Path) -> list[Path]:
    """Every process's spool directory under `root`, in slot order."""
    found = [p for p in root.glob(f"{WORKER_PREFIX}*") if p.name[len(WORKER_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(WORKER_PREFIX) :]))


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    synced_size: int
    records: int
    fd: int | None = None  # open for appending only while it is the active segment


class Spool:
    """One process's spool; every method runs on the event loop's thread."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int = 1024**3,
        segment_bytes: int = 64 * 1024**2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._clock = clock
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        # The drain's position: the segment it reads and the byte offset of its next record.
        self._read_seq = 0
        self._read_at = 0
        self._pending = 0  # records appended and not yet drained
        self._oldest_ms: int | None = None
        self._written = 0  # tickets: one per append
        self._synced = 0
        self._sync_task: asyncio.Task[None] | None = None
        self._to_close: list[int] = []
        self._dir_dirty = False
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()  # ends the drain; set by `stop_draining` and `close`
        self._closed = False
        self._refused = False  # an append hit the cap and nothing was drained since
        self.drained_total = 0
        self._open()

    # -- state -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records spooled and not yet acknowledged by Kafka."""
        return self._pending

    @property
    def bytes_used(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def full(self) -> bool:
        """An append was refused at the cap, and no record has been drained since."""
        return self._refused

    def oldest_age_s(self) -> float:
        """Seconds the oldest undrained record has waited; 0 when the spool is empty."""
        if not self._pending or self._oldest_ms is None:
            return 0.0
        return max(0.0, self._clock() - self._oldest_ms / 1000)

    # -- opening -----------------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        read_seq, read_at = self._load_position()
        for path in list_segments(self.directory):
            seq = int(path.stem)
            if seq < read_seq:
                path.unlink()  # drained before the last stop; its deletion did not happen
                continue
            data = path.read_bytes()
            end, records = 0, 0
            for _, end, record in read_frames(data):
                records += 1
                if seq > read_seq or end > read_at:
                    if self._oldest_ms is None:
                        self._oldest_ms = record.spooled_at_ms
                    self._pending += 1
            if end < len(data):
                log.warning(
                    "spool: cut a torn record off the end of a segment",
                    extra={"segment": path.name, "offset": end, "bytes": len(data) - end},
                )
                os.truncate(path, end)
            self._segments.append(_Segment(seq, path, end, end, records))
        if self._segments and read_seq < self._segments[0].seq:
            read_seq, read_at = self._segments[0].seq, 0
        self._read_seq, self._read_at = read_seq, read_at
        if self._pending:
            log.info(
                "spool: records left from the last run will drain",
                extra={"records": self._pending, "directory": str(self.directory)},
            )

    def _load_position(self) -> tuple[int, int]:
        try:
            seq, offset = (self.directory / DRAINED_FILE).read_text().split()
            return int(seq), int(offset)
        except (FileNotFoundError, ValueError):
            return 0, 0

    def _save_position(self) -> None:
        # Not fsynced: losing it only means re-sending records that dedupe then drops.
        temporary = self.directory / f"{DRAINED_FILE}.tmp"
        temporary.write_text(f"{self._read_seq} {self._read_at}")
        os.replace(temporary, self.directory / DRAINED_FILE)

    # -- appending ---------------------------------------------------------------------

    async def append(self, topic: str, key: str, value: bytes, value_format: str = "avro") -> None:
        """Returns once the record is on disk (fsynced); raises `SpoolFullError` at the cap."""
        if self._closed:
            raise SpoolClosedError("the spool is closed")
        stamp = int(self._clock() * 1000)
        frame = encode_record(SpooledRecord(topic, key, value_format, value, stamp))
        if len(frame) - _FRAME.size > MAX_RECORD_BYTES:
            raise SpoolFullError("record larger than a spool record may be")
        if self.bytes_used + len(frame) > self.max_bytes:
            self._refused = True
            raise SpoolFullError(f"spool is full ({self.max_bytes} bytes)")
        segment = self._writable(len(frame))
        assert segment.fd is not None
        written = os.write(segment.fd, frame)
        if written != len(frame):
            # A full disk. Cut the partial frame off, so the next record follows the
            # last whole one instead of a torn frame that would hide it from the drain.
            os.ftruncate(segment.fd, segment.size)
            raise OSError(f"short write to the spool ({written} of {len(frame)} bytes)")
        segment.size += len(frame)
        segment.records += 1
        if not self._pending:
            self._oldest_ms = stamp
        self._pending += 1
        self._written += 1
        await self._wait_synced(self._written)
        self._wakeup.set()

    def _writable(self, size: int) -> _Segment:
        active = self._active
        if active is not None and active.size and active.size + size > self.segment_bytes:
            assert active.fd is not None
            self._to_close.append(active.fd)  # closed by the next sync, after its fsync
            active.fd = None
            self._active = active = None
        if active is None:
            seq = (self._segments[-1].seq if self._segments else self._read_seq) + 1
            path = self.directory / f"{seq:020d}{SEGMENT_SUFFIX}"
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            active = _Segment(seq, path, 0, 0, 0, fd)
            self._segments.append(active)
            self._active = active
            self._dir_dirty = True
            if not self._pending:
                self._read_seq, self._read_at = seq, 0
        return active

    async def _wait_synced(self, ticket: int) -> None:
        while self._synced < ticket:
            if self._sync_task is None:
                self._sync_task = asyncio.create_task(self._sync_once())
            await asyncio.shield(self._sync_task)

    async def _sync_once(self) -> None:
        try:
            target = self._written
            active = self._active
            fds = list(self._to_close)
            closing, self._to_close = self._to_close, []
            if active is not None and active.fd is not None:
                fds.append(active.fd)
            sizes = {segment.seq: segment.size for segment in self._segments}
            directory = self._dir_dirty
            self._dir_dirty = False
            await asyncio.to_thread(_fsync_all, fds, closing, self.directory if directory else None)
            for segment in self._segments:
                segment.synced_size = max(segment.synced_size, sizes.get(segment.seq, 0))
            self._synced = target
        finally:
            self._sync_task = None

    # -- draining ----------------------------------------------------------------------

    def _next_batch(self, limit: int) -> list[tuple[int, int, SpooledRecord]]:
        """Up to `limit` synced, undrained records from the current segment, with positions."""
        for segment in self._segments:
            if segment.seq < self._read_seq:
                continue
            if segment.seq > self._read_seq:
                self._read_seq, self._read_at = segment.seq, 0
            if self._read_at >= segment.synced_size:
                if segment is self._active:
                    return []
                continue
            batch = self._read_records(segment, limit)
            if batch or segment is self._active:
                return batch
            # Unreadable past the drain's position (changed on disk since it was opened).
            log.error(
                "spool: skipping the unreadable rest of a segment",
                extra={"segment": segment.path.name, "offset": self._read_at},
            )
            self._read_at = segment.size
        return []

    def _read_records(self, segment: _Segment, limit: int) -> list[tuple[int, int, SpooledRecord]]:
        # A bounded read per batch: reading the whole rest of a 64 MiB segment each time
        # would make draining it quadratic.
        remaining = segment.synced_size - self._read_at
        chunk = min(remaining, READ_CHUNK_BYTES)
        with segment.path.open("rb") as source:
            while True:
                source.seek(self._read_at)
                data = source.read(chunk)
                batch = []
                for at, end, record in read_frames(data):
                    batch.append((self._read_at + at, self._read_at + end, record))
                    if len(batch) >= limit:
                        break
                if batch or chunk >= remaining:
                    return batch
                chunk = min(remaining, chunk * 2)  # one record larger than the chunk

    def _advance(self, end: int, records: int, next_stamp: int | None) -> None:
        self._read_at = end
        self._pending -= records
        self.drained_total += records
        self._refused = False
        self._oldest_ms = next_stamp
        self._save_position()
        self._drop_drained()

    def _drop_drained(self) -> None:
        keep = []
        for segment in self._segments:
            finished = segment.seq < self._read_seq or (
                segment.seq == self._read_seq and self._read_at >= segment.size
            )
            if finished and segment is self._active and self._sync_task is None:
                # Drained to the end: close it, so the next append starts a fresh segment.
                if segment.fd is not None:
                    os.close(segment.fd)
                segment.fd = None
                self._active = None
            if finished and segment is not self._active:
                segment.path.unlink(missing_ok=True)
                continue
            keep.append(segment)
        self._segments = keep

    async def drain(
        self,
        send: Callable[[SpooledRecord], Awaitable[object]],
        batch: int = 500,
        first_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        on_drained: Callable[[int], None] | None = None,
        until_empty: bool = False,
    ) -> None:
        """Sends spooled records to Kafka in order until stopped; run it as a task.

        A batch is sent at once (the idempotent producer keeps its order) and
        its acknowledged prefix is recorded as drained. On a failure the rest is
        sent again after a back-off that doubles up to `max_delay_s`, and the
        next attempt carries one record alone (so does the first one): while
        Kafka is away, an attempt that times out after the broker wrote it
        repeats one record, not a batch. `on_drained` hears how many records
        each acknowledged prefix held. With `until_empty` it returns once
        nothing is left (a directory adopted from a dead process).
        """
        delay = first_delay_s
        probing = True
        while not self._stopping.is_set():
            records = self._next_batch(1 if probing else batch)
            if not records:
                self._drop_drained()
                if until_empty:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            outcomes = await asyncio.gather(
                *(send(record) for _, _, record in records), return_exceptions=True
            )
            done = 0
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    break
                done += 1
            if done:
                following = records[done][2].spooled_at_ms if done < len(records) else None
                self._advance(records[done - 1][1], done, following)
                if following is None and self._pending:
                    self._oldest_ms = self._peek_stamp()
                if on_drained is not None:
                    on_drained(done)
            if done < len(records):
                failure = outcomes[done]
                log.warning(
                    "spool: Kafka did not take a spooled record; retrying",
                    extra={
                        "error": f"{type(failure).__name__}: {failure}"[:300],
                        "in_s": delay,
                        "pending": self._pending,
                    },
                )
                probing = True
                await self._pause(delay)
                delay = min(max_delay_s, delay * 2)
            else:
                probing = False
                delay = first_delay_s

    async def _pause(self, seconds: float) -> None:
        """Sleeps `seconds`, or less if the drain is told to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def stop_draining(self) -> None:
        """Ends `drain` after the batch in flight (acknowledged or failed) is recorded."""
        self._stopping.set()
        self._wakeup.set()

    def _peek_stamp(self) -> int | None:
        records = self._next_batch(1)
        return records[0][2].spooled_at_ms if records else None

    async def close(self) -> None:
        """Waits for the last fsync and closes the files; what is spooled stays for next time.

        Stop the drain first (`stop_draining`, then await its task): a batch it
        still has in flight would otherwise be sent again after a restart.
        """
        self._closed = True
        self.stop_draining()
        if self._sync_task is not None:
            await asyncio.shield(self._sync_task)
        for fd in self._to_close:
            os.close(fd)
        self._to_close = []
        if self._active is not None and self._active.fd is not None:
            os.fsync(self._active.fd)
            os.close(self._active.fd)
            self._active.fd = None


def _fsync_all(fds: list[int], closing: list[int], directory: Path | None) -> None:
    for fd in fds:
        os.fsync(fd)
    for fd in closing:
        os.close(fd)
    if directory is not None:
        # A new segment's directory entry must survive a power loss too.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

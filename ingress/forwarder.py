"""Store and forward: the spool between the request handler and Kafka, and its drain.

With the spool on (`ONOFF_BRIDGE_SPOOL_ENABLED`), the handler sends a record
to Kafka as before while the spool is empty; when Kafka does not acknowledge
it in time, or while the spool holds records, it appends the record to the
spool instead (fsynced before the 200), so a call's later deliveries queue
behind its earlier ones. `SpoolForwarder` owns this process's spool
directory, drains it into Kafka in the background, frames records spooled
before the registry gave their schema an id, and adopts the directories of
processes that are gone (a crash, a smaller `--workers`) to drain them too.

Nothing here runs per request while the spool is empty and Kafka answers:
the handler reads `holding` (an integer compare) and sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingress.errors import PublishError
from ingress.metrics import IngressMetrics, SpoolFigures
from ingress.spool import (
    Spool,
    SpoolClosedError,
    SpooledRecord,
    SpoolFullError,
    claim_directory,
    list_segments,
    lock_directory,
    spool_directories,
)

log = logging.getLogger(__name__)

# The value format of a record ready to send: Confluent-framed Avro. Any other format
# names the schema (`SchemaName`) of an Avro body that waits for its schema id.
AVRO = "avro"
ADOPT_EVERY_S = 30.0
METRICS_EVERY_S = 1.0

Send = Callable[[str, str, bytes], Awaitable[object]]


class Framer(Protocol):
    def frame(self, body: bytes) -> bytes: ...


@dataclass(frozen=True)
class SpoolStatus:
    records: int
    bytes: int
    capacity_bytes: int
    oldest_age_s: float
    full: bool

    def figures(self) -> SpoolFigures:
        return self.records, self.bytes, self.capacity_bytes, self.oldest_age_s


class SpoolForwarder:
    """This process's spool and the tasks that empty it into Kafka; start it on the event loop."""

    def __init__(
        self,
        root: Path,
        send: Send,
        framers: Mapping[str, Framer],
        schemas_ready: Callable[[], bool],
        metrics: IngressMetrics,
        *,
        max_bytes: int,
        segment_bytes: int,
        drain_batch: int,
        shutdown_drain_s: float,
        adopt_every_s: float = ADOPT_EVERY_S,
    ) -> None:
        self.root = root
        self._send = send
        self._framers = dict(framers)
        self._schemas_ready = schemas_ready
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._drain_batch = drain_batch
        self._shutdown_drain_s = shutdown_drain_s
        self._adopt_every_s = adopt_every_s
        self._spool: Spool | None = None
        self._lock_fd: int | None = None
        self._adopted: dict[Path, Spool] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()  # set each time a drain records acknowledged records

    # -- the request path --------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """True while this process's spool holds records Kafka has not acknowledged."""
        return self._spool is not None and self._spool.pending > 0

    async def append(self, topic: str, key: str, value: bytes, value_format: str, why: str) -> None:
        """Returns once the record is fsynced; `PublishError` (503) when it cannot be."""
        if self._spool is None:
            raise PublishError("the spool is not open yet")
        try:
            await self._spool.append(topic, key, value, value_format)
        except SpoolFullError as exc:
            raise PublishError(f"not stored: {exc}") from exc
        except SpoolClosedError as exc:  # shutting down
            raise PublishError("not stored: the spool is closed") from exc
        except OSError as exc:  # a full or failing disk
            raise PublishError(f"not stored: the spool cannot write ({exc})") from exc
        self._metrics.spooled.labels(topic, why).inc()

    def status(self) -> SpoolStatus:
        spools = [self._spool, *self._adopted.values()] if self._spool else []
        return SpoolStatus(
            records=sum(s.pending for s in spools),
            bytes=sum(s.bytes_used for s in spools),
            capacity_bytes=self._max_bytes,
            oldest_age_s=max((s.oldest_age_s() for s in spools), default=0.0),
            full=self._spool is not None and self._spool.full,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        # Opening reads every segment left from the last run (up to the cap): not on the loop.
        directory, self._lock_fd = await asyncio.to_thread(claim_directory, self.root)
        self._spool = await asyncio.to_thread(
            Spool, directory, self._max_bytes, self._segment_bytes
        )
        log.info(
            "spool open",
            extra={"directory": str(directory), "records": self._spool.pending},
        )
        self._metrics.watch_spool(lambda: self.status().figures())
        self._tasks = [
            asyncio.create_task(self._drain(self._spool), name="spool-drain"),
            asyncio.create_task(self._adopt_orphans(), name="spool-adopt"),
        ]
        if self._metrics.multiprocess:
            self._tasks.append(asyncio.create_task(self._refresh_metrics(), name="spool-metrics"))

    async def stop(self) -> None:
        """Lets the drain empty the spool for a while, then stops it and closes the files.

        What is left stays on disk for the next process that claims the directory.
        """
        if self._spool is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._shutdown_drain_s):
                while self.status().records:
                    self._progress.clear()
                    await self._progress.wait()
        left = self.status().records
        if left:
            log.warning(
                "spool: records left for the next start",
                extra={"records": left, "directory": str(self._spool.directory)},
            )
        self._stopping.set()
        for spool in (self._spool, *self._adopted.values()):
            spool.stop_draining()
        # Each task ends once its batch in flight is acknowledged or timed out.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._spool.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- draining ----------------------------------------------------------------------

    async def _drain(self, spool: Spool, until_empty: bool = False) -> None:
        await spool.drain(
            self._send_spooled,
            batch=self._drain_batch,
            on_drained=self._drained,
            until_empty=until_empty,
        )

    def _drained(self, records: int) -> None:
        self._metrics.spool_drained.inc(records)
        self._progress.set()

    async def _send_spooled(self, record: SpooledRecord) -> None:
        value = record.value
        if record.value_format != AVRO:
            framer = self._framers.get(record.value_format)
            if framer is None:  # written by a version that knows a schema this one does not
                raise PublishError(f"no schema named {record.value_format!r} to frame it with")
            if not self._schemas_ready():
                raise PublishError("the registry has not given the schema an id yet")
            value = framer.frame(value)
        await self._send(record.topic, record.key, value)

    async def _adopt_orphans(self) -> None:
        """Drains, one at a time, the spool directories no live process holds."""
        while not self._stopping.is_set():
            for directory in await asyncio.to_thread(spool_directories, self.root):
                if self._stopping.is_set():
                    return
                if self._spool is not None and directory == self._spool.directory:
                    continue
                try:
                    await self._adopt(directory)
                except Exception:  # one unreadable directory must not end the adoption
                    log.exception(
                        "spool: cannot adopt a directory", extra={"directory": str(directory)}
                    )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._adopt_every_s):
                    await self._stopping.wait()

    async def _adopt(self, directory: Path) -> None:
        fd = await asyncio.to_thread(lock_directory, directory)
        if fd is None:  # its process is alive
            return
        try:
            if not await asyncio.to_thread(list_segments, directory):
                return
            spool = await asyncio.to_thread(Spool, directory, self._max_bytes, self._segment_bytes)
            if not spool.pending:
                await spool.close()
                return
            log.info(
                "spool: draining the directory of a process that is gone",
                extra={"directory": str(directory), "records": spool.pending},
            )
            self._adopted[directory] = spool
            if self._stopping.is_set():  # `stop` ran while this directory was being opened
                spool.stop_draining()
            try:
                await self._drain(spool, until_empty=True)
            finally:
                del self._adopted[directory]
                await spool.close()
            if not spool.pending:
                log.info("spool: adopted directory drained", extra={"directory": str(directory)})
        finally:
            os.close(fd)

    async def _refresh_metrics(self) -> None:
        while not self._stopping.is_set():
            self._metrics.refresh_spool()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(METRICS_EVERY_S):
                    await self._stopping.wait()

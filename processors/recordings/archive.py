"""Fetch, store, retry: what became of one link, as the fields of a `Recording` record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from processors.recordings.errors import RecordingError
from processors.recordings.fetch import RecordingFetcher, retrying
from processors.recordings.settings import RecordingSettings
from processors.recordings.storage import RecordingStore, extension_for, object_key


@dataclass(frozen=True)
class ArchiveResult:
    status: str
    storage_uri: str | None = None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    error: str | None = None


class RecordingArchiver:
    def __init__(
        self, settings: RecordingSettings, fetcher: RecordingFetcher, store: RecordingStore
    ) -> None:
        self._settings = settings
        self._fetcher = fetcher
        self._store = store

    async def archive(self, call_id: str, kind: str, url: str, day: date) -> ArchiveResult:
        """Downloads and stores `url`, retrying transient errors; the outcome, never raised."""

        async def attempt() -> ArchiveResult:
            download = await self._fetcher.download(url, self._store.spool_dir)
            key = object_key(
                self._settings.prefix,
                day,
                call_id,
                kind,
                download.sha256,
                extension_for(download.content_type, url),
            )
            # The store consumes the spooled file, also when it fails.
            uri = await self._store.save(download.path, key, download.content_type)
            return ArchiveResult(
                status="stored",
                storage_uri=uri,
                sha256=download.sha256,
                size=download.size,
                content_type=download.content_type,
            )

        try:
            return await retrying(attempt, self._settings)
        except RecordingError as exc:
            return ArchiveResult(status=exc.status, error=exc.reason)

    async def aclose(self) -> None:
        await self._fetcher.aclose()

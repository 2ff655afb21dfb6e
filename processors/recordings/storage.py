"""Where recordings are kept: one small protocol, a local directory and S3-compatible storage.

A download is first spooled to a temp file (hashing while it streams), because
the object's name carries the content's sha256. `save` then makes it visible
in one step: a rename in the same directory tree, or a multipart upload that
is completed only after its last part (and aborted on any failure). So a
reader never sees a partial object, and writing the same content twice gives
the same name and the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from processors.recordings.errors import StorageError
from processors.recordings.settings import RecordingSettings

_EXTENSIONS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "audio/opus": "opus",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "audio/amr": "amr",
}
_SUFFIX = re.compile(r"\.([a-z0-9]{1,5})$")
SHA_PREFIX_LENGTH = 16


class RecordingStore(Protocol):
    @property
    def spool_dir(self) -> Path:
        """Where downloads are written before `save`; on the same file system if that matters."""
        ...

    async def save(self, spooled: Path, key: str, content_type: str) -> str:
        """Makes `spooled` visible under `key` atomically; returns its URI. Consumes `spooled`."""
        ...


def object_key(prefix: str, day: date, call_id: str, kind: str, sha256: str, extension: str) -> str:
    """`<prefix>/<yyyy>/<mm>/<dd>/<call id>/<kind>-<sha256 prefix>.<ext>`."""
    parts = [
        prefix.strip("/"),
        f"{day:%Y}",
        f"{day:%m}",
        f"{day:%d}",
        path_segment(call_id),
        f"{kind}-{sha256[:SHA_PREFIX_LENGTH]}.{extension}",
    ]
    return "/".join(part for part in parts if part)


_MAX_SEGMENT = 200


def path_segment(text: str) -> str:
    """`text` as one safe path segment: the call id is untrusted ("../..", "a/b")."""
    escaped = quote(text, safe="").replace(".", "%2E").replace("~", "%7E")
    if escaped and len(escaped) <= _MAX_SEGMENT:
        return escaped
    # Escaping never leaves a '~', so a segment with one cannot be another id's escape:
    # empty and overlong ids stay distinct from every other id.
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{escaped[: _MAX_SEGMENT - 33]}~{digest}"


def extension_for(content_type: str, url: str) -> str:
    known = _EXTENSIONS.get(content_type)
    if known:
        return known
    match = _SUFFIX.search(urlsplit(url).path.lower())
    return match.group(1) if match else "bin"


class LocalDirectoryStore:
    """Objects under `<root>/<key>`; temp files under `<root>/.incoming`, renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._incoming = self.root / ".incoming"

    @property
    def spool_dir(self) -> Path:
        self._incoming.mkdir(parents=True, exist_ok=True)
        return self._incoming

    async def save(self, spooled: Path, key: str, content_type: str) -> str:
        target = self.root / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Same file system, so the rename is atomic: the name appears with all its bytes.
            os.replace(spooled, target)
        except OSError as exc:
            _discard(spooled)
            raise StorageError(f"cannot store {key}: {exc.strerror}") from exc
        return target.as_uri()

    def clean_incoming(self, older_than_s: float = 3600.0) -> int:
        """Removes temp files a crashed worker left behind; returns how many."""
        if not self._incoming.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._incoming.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


class S3Store:
    """Objects in an S3-compatible bucket, each written with one multipart upload.

    Needs boto3. The upload runs in a thread (boto3 is synchronous), part by
    part from the spooled file, so memory holds one part at a time.
    """

    def __init__(self, settings: RecordingSettings, client: Any | None = None) -> None:
        if not settings.s3_bucket:
            raise ValueError("recordings.s3_bucket is required for the s3 storage")
        self.bucket = settings.s3_bucket
        self.part_size = settings.s3_part_size_bytes
        self._spool_dir = settings.spool_dir
        self._client = client if client is not None else s3_client(settings)

    @property
    def spool_dir(self) -> Path:
        if self._spool_dir is None:
            import tempfile

            return Path(tempfile.gettempdir())
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        return self._spool_dir

    async def save(self, spooled: Path, key: str, content_type: str) -> str:
        try:
            await asyncio.to_thread(self._upload, spooled, key, content_type)
        finally:
            _discard(spooled)
        return f"s3://{self.bucket}/{key}"

    def _upload(self, spooled: Path, key: str, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot start an upload of {key}: {exc}") from exc
        upload_id = upload["UploadId"]
        try:
            parts = []
            with spooled.open("rb") as source:
                number = 1
                while True:
                    chunk = source.read(self.part_size)
                    if not chunk and number > 1:
                        break
                    answer = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                    number += 1
                    if len(chunk) < self.part_size:
                        break
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException as exc:
            # Nothing is visible until complete; abort so the parts are not billed forever.
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            if isinstance(exc, BotoCoreError | ClientError | OSError):
                raise StorageError(f"cannot upload {key}: {exc}") from exc
            raise


def s3_client(settings: RecordingSettings) -> Any:
    """A boto3 S3 client for the configured endpoint and keys (also how `verify` reads objects)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # boto3 is an optional dependency
        raise RuntimeError("the s3 storage needs boto3: pip install boto3") from exc
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=(
            settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
        ),
        aws_secret_access_key=(
            settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None
        ),
        config=Config(
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def build_store(settings: RecordingSettings) -> RecordingStore:
    if settings.storage == "s3":
        return S3Store(settings)
    return LocalDirectoryStore(settings.directory)

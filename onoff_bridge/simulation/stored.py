"""Reading stored recordings back from the store, so `verify` hashes what is really kept.

The recordings worker names an object by its URI in the `Recording` record:
`file:///...` for the local directory store, `s3://bucket/key` for S3 (read
with the same `ONOFF_BRIDGE_RECORDINGS__S3_*` settings as the worker's). The
sha256 in the record is the worker's own claim; this checks the bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from processors.recordings.settings import RecordingSettings


class StoredObjects:
    """The sha256 of each stored object by URI; an object read once is not read again."""

    def __init__(self, settings: RecordingSettings, s3: Any | None = None) -> None:
        self._settings = settings
        self._s3 = s3
        self._digests: dict[str, str] = {}

    def digest(self, uri: str) -> str:
        """The object's sha256, or `unreadable: <why>` (a mismatch for verify, not an error)."""
        if uri in self._digests:
            return self._digests[uri]
        try:
            data = self._read(uri)
        except (OSError, ValueError) as exc:
            return f"unreadable: {exc}"
        digest = hashlib.sha256(data).hexdigest()
        self._digests[uri] = digest  # objects never change: the name carries the hash
        return digest

    def _read(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.scheme == "file":
            return Path(unquote(parts.path)).read_bytes()
        if parts.scheme == "s3":
            return self._read_s3(parts.netloc, parts.path.lstrip("/"))
        raise ValueError(f"no reader for {parts.scheme or 'a URI without a scheme'}")

    def _read_s3(self, bucket: str, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._s3 is None:
            from processors.recordings.storage import s3_client

            self._s3 = s3_client(self._settings)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            data: bytes = body.read()
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"s3://{bucket}/{key}: {exc}") from exc
        return data

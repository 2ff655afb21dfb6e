"""The S3 store through a real S3-compatible HTTP endpoint: moto's server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from processors.recordings.archive import ArchiveResult, RecordingArchiver
from processors.recordings.fetch import RecordingFetcher
from processors.recordings.guard import AddressGuard
from processors.recordings.settings import MIB, RecordingSettings
from processors.recordings.storage import S3Store
from tests.integration.processor_fixtures import free_port
from tests.integration.recordings_fixtures import AudioServer, payload

BUCKET = "recordings-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


def archive(endpoint: str, spool: Path, url: str, bucket: str = BUCKET) -> ArchiveResult:
    settings = RecordingSettings(
        storage="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_access_key_id=SecretStr("testing"),
        s3_secret_access_key=SecretStr("testing"),
        s3_part_size_bytes=5 * MIB,
        spool_dir=spool,
        prefix="tenant-a",
        max_bytes=8 * MIB,
        retry_base_delay_s=0.05,
        retry_deadline_s=0.5,
    )
    archiver = RecordingArchiver(
        settings,
        RecordingFetcher(settings, AddressGuard.build(allow_loopback=True)),
        S3Store(settings),
    )

    async def run() -> ArchiveResult:
        try:
            return await archiver.archive("c-9", "voicemail", url, date(2026, 3, 2))
        finally:
            await archiver.aclose()

    return asyncio.run(run())


def test_a_multipart_upload_stores_the_exact_bytes(
    server: AudioServer, s3_endpoint: str, s3: Any, tmp_path: Path
) -> None:
    size = 6 * MIB + 123  # two parts
    result = archive(s3_endpoint, tmp_path, server.url(f"/audio/vm.mp3?size={size}&sig=x"))
    assert result.status == "stored", result.error
    body = payload("vm.mp3", size)
    digest = hashlib.sha256(body).hexdigest()
    key = f"tenant-a/2026/03/02/c-9/voicemail-{digest[:16]}.mp3"
    assert result.storage_uri == f"s3://{BUCKET}/{key}"
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == digest == result.sha256
    assert stored["ContentType"] == "audio/mpeg"
    assert list(tmp_path.iterdir()) == []  # the spooled download is gone


def test_refused_and_failed_uploads_leave_no_object_or_open_upload(
    server: AudioServer, s3_endpoint: str, s3: Any, tmp_path: Path
) -> None:
    before = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    too_big = archive(s3_endpoint, tmp_path, server.url(f"/big/huge.mp3?size={9 * MIB}"))
    assert too_big.status == "rejected"
    missing = archive(s3_endpoint, tmp_path, server.url("/audio/lost.mp3"), bucket="missing")
    assert missing.status == "failed"
    assert "NoSuchBucket" in (missing.error or "")
    after = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert after == before
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert list(tmp_path.iterdir()) == []

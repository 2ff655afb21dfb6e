"""Fetching and storing one link against a real HTTP server on 127.0.0.1, local directory store.

In process (no broker needed for these): each case ends with the right status
and no partial object in storage. Loopback is allowed where the server itself
is the subject; the SSRF cases turn it off and say what really happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from datetime import date
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from processors.recordings.archive import ArchiveResult, RecordingArchiver
from processors.recordings.fetch import RecordingFetcher
from processors.recordings.guard import AddressGuard, IPAddress
from processors.recordings.settings import RecordingSettings
from processors.recordings.storage import LocalDirectoryStore
from tests.integration.recordings_fixtures import (
    AudioServer,
    audio_server,
    payload,
    spooled,
    stored_objects,
)

DAY = date(2026, 3, 2)
SECRET = "X-Amz-Signature=s3cr3t"


@pytest.fixture(scope="module")
def other_server() -> Iterator[AudioServer]:
    with audio_server() as started:
        yield started


def archive(
    root: Path, url: str, guard: AddressGuard | None = None, **overrides: Any
) -> ArchiveResult:
    options: dict[str, Any] = {
        "directory": root,
        "allow_loopback": True,
        "max_bytes": 1024 * 1024,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "retry_base_delay_s": 0.05,
        "retry_max_delay_s": 0.2,
        "retry_deadline_s": 2.0,
    } | overrides
    settings = RecordingSettings(**options)
    guard = guard or AddressGuard.build(
        allow_loopback=settings.allow_loopback, host_overrides=settings.host_overrides
    )
    archiver = RecordingArchiver(
        settings, RecordingFetcher(settings, guard), LocalDirectoryStore(root)
    )

    async def run() -> ArchiveResult:
        try:
            return await archiver.archive("c-1", "recording", url, DAY)
        finally:
            await archiver.aclose()

    return asyncio.run(run())


def assert_nothing_stored(root: Path) -> None:
    assert stored_objects(root) == []
    assert spooled(root) == []


def test_audio_is_stored_under_its_hash(server: AudioServer, tmp_path: Path) -> None:
    result = archive(tmp_path, server.url(f"/audio/normal.mp3?{SECRET}"))
    body = payload("normal.mp3")
    digest = hashlib.sha256(body).hexdigest()
    assert result.status == "stored", result.error
    assert (result.sha256, result.size, result.content_type) == (digest, len(body), "audio/mpeg")
    expected = tmp_path / f"recordings/2026/03/02/c-1/recording-{digest[:16]}.mp3"
    assert stored_objects(tmp_path) == [expected]
    assert result.storage_uri == expected.as_uri()
    assert expected.read_bytes() == body
    assert spooled(tmp_path) == []


def test_a_second_download_of_the_same_content_is_the_same_object(
    server: AudioServer, tmp_path: Path
) -> None:
    first = archive(tmp_path, server.url("/audio/twice.mp3"))
    second = archive(tmp_path, server.url("/audio/twice.mp3"))
    assert first == second and first.status == "stored"
    assert len(stored_objects(tmp_path)) == 1


def test_a_slow_server_within_the_read_timeout_is_stored(
    server: AudioServer, tmp_path: Path
) -> None:
    result = archive(tmp_path, server.url("/slow/slow.mp3?seconds=1.5"))
    assert result.status == "stored", result.error
    assert result.sha256 == hashlib.sha256(payload("slow.mp3")).hexdigest()


def test_a_server_slower_than_the_read_timeout_fails_without_a_partial_object(
    server: AudioServer, tmp_path: Path
) -> None:
    result = archive(
        tmp_path,
        server.url("/slow/stalling.mp3?seconds=10"),
        read_timeout_s=0.3,
        retry_deadline_s=0.5,
    )
    assert result.status == "failed"
    assert "ReadTimeout" in (result.error or "")
    assert_nothing_stored(tmp_path)


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_cap_is_rejected_while_streaming(
    server: AudioServer, tmp_path: Path, declared: bool
) -> None:
    path = "/audio/large.mp3" if declared else "/big/large-unsized.mp3"
    result = archive(tmp_path, server.url(f"{path}?size={3 * 1024 * 1024}"))
    assert result.status == "rejected"
    assert "limit" in (result.error or "")
    assert_nothing_stored(tmp_path)
    assert server.count(path) == 1


@pytest.mark.parametrize("code", [403, 404, 410])
def test_gone_links_are_expired_after_one_request(
    server: AudioServer, tmp_path: Path, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = archive(tmp_path, server.url(f"/status/{code}/gone.mp3?{SECRET}"))
    assert (result.status, result.error) == (
        "expired",
        f"{server.base}/status/{code}/gone.mp3: HTTP {code}",
    )
    assert server.count(f"/status/{code}/gone.mp3") == 1
    assert_nothing_stored(tmp_path)
    assert_secret_not_logged(caplog)


def test_a_500_then_200_is_retried_and_stored(
    server: AudioServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = archive(tmp_path, server.url(f"/flaky/flaky.mp3?failures=2&{SECRET}"))
    assert result.status == "stored", result.error
    assert server.count("/flaky/flaky.mp3") == 3
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert_secret_not_logged(caplog)


def test_a_server_that_keeps_failing_is_failed_at_the_deadline(
    server: AudioServer, tmp_path: Path
) -> None:
    result = archive(tmp_path, server.url("/flaky/down.mp3?failures=1000"), retry_deadline_s=0.6)
    assert result.status == "failed"
    assert (result.error or "").endswith("HTTP 500")
    assert 2 <= server.count("/flaky/down.mp3") <= 10
    assert_nothing_stored(tmp_path)


def test_a_wrong_content_type_is_rejected(server: AudioServer, tmp_path: Path) -> None:
    result = archive(tmp_path, server.url("/html/login"))
    assert result.status == "rejected"
    assert "text/html" in (result.error or "")
    assert_nothing_stored(tmp_path)


def trusting(server: AudioServer) -> AddressGuard:
    # Loopback is NOT allowed: only this one host:port skips the address check,
    # as an allowed public host would pass it.
    return AddressGuard.build(allow_loopback=False, trusted_endpoints=[f"127.0.0.1:{server.port}"])


def test_a_redirect_to_loopback_is_rejected(
    server: AudioServer, other_server: AudioServer, tmp_path: Path
) -> None:
    target = other_server.url("/audio/internal.mp3")
    url = server.url(f"/redirect/to-loopback?to={quote(target, safe='')}")
    result = archive(tmp_path, url, guard=trusting(server), allow_loopback=False)
    assert result.status == "rejected"
    assert "127.0.0.1 is a loopback address" in (result.error or "")
    assert server.count("/redirect/to-loopback") == 1
    assert other_server.count("/audio/internal.mp3") == 0
    assert_nothing_stored(tmp_path)


def test_redirects_are_followed_and_counted(server: AudioServer, tmp_path: Path) -> None:
    guard = trusting(server)
    final = server.url("/audio/after-redirect.mp3")
    hop = final
    for i in range(3):
        hop = server.url(f"/redirect/hop-{i}?to={quote(hop, safe='')}")
    assert archive(tmp_path, hop, guard=guard, allow_loopback=False).status == "stored"
    four = server.url(f"/redirect/hop-3?to={quote(hop, safe='')}")
    result = archive(tmp_path / "again", four, guard=guard, allow_loopback=False)
    assert (result.status, result.error) == ("rejected", "more than 3 redirects")


def test_a_name_that_resolves_to_a_private_address_is_rejected(tmp_path: Path) -> None:
    result = archive(
        tmp_path,
        "http://recordings.internal.test/a.mp3",
        host_overrides={"recordings.internal.test": "10.0.0.1"},
    )
    assert result.status == "rejected"
    assert result.error == "recordings.internal.test resolves to 10.0.0.1 is a private address"
    assert_nothing_stored(tmp_path)


def test_the_connection_goes_to_the_vetted_address_not_a_second_lookup(
    server: AudioServer, tmp_path: Path
) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # a rebinding DNS server
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ip_address(a) for a in next(answers)]

    guard = AddressGuard.build(allow_loopback=True, resolver=rebinding)
    url = f"http://audio.rebind.test:{server.port}/audio/rebind.mp3"
    result = archive(tmp_path, url, guard=guard)
    assert result.status == "stored", result.error
    assert asked == ["audio.rebind.test"]
    # The request went to the vetted IP, with the name in the Host header.
    assert server.hosts["/audio/rebind.mp3"] == [f"audio.rebind.test:{server.port}"]


def test_proxy_variables_are_ignored(
    server: AudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing listens
    assert archive(tmp_path, server.url("/audio/no-proxy.mp3")).status == "stored"


def assert_secret_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert "s3cr3t" not in record.getMessage()
        assert "s3cr3t" not in repr(record.__dict__)

"""Downloads one recording link to a spooled temp file, hashing as it streams.

Each hop of the request goes through `AddressGuard.vet`, and the connection
is made to the address it vetted: the request URL carries that IP, while the
Host header and the TLS SNI (and so certificate verification) carry the name.
Redirects are followed by hand, at most `max_redirects`, each one vetted
again. The client ignores proxy variables (`trust_env=False`): a proxy would
resolve and connect on its own, out of the guard's reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from processors.recordings.errors import (
    RecordingExpiredError,
    RecordingFailedError,
    RecordingRejectedError,
    TransientFetchError,
)
from processors.recordings.guard import SCHEMES, AddressGuard, VettedTarget
from processors.recordings.settings import RecordingSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

_EXPIRED = {403, 404, 410}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


def redact(url: str | httpx.URL) -> str:
    """The URL without query, fragment or credentials: what may be logged of a signed link."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(invalid URL)"
    port = f":{parsed.port}" if parsed.port else ""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


class RedactedUrls(logging.Filter):
    """Cuts query strings out of httpx's own request log ("HTTP Request: GET <url> ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(redact(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def redact_httpx_logs() -> None:
    """httpx logs every request's full URL at INFO: a signed link would reach the logs."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactedUrls) for f in logger.filters):
        logger.addFilter(RedactedUrls())


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    size: int
    content_type: str


class RecordingFetcher:
    def __init__(
        self,
        settings: RecordingSettings,
        guard: AddressGuard,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._guard = guard
        redact_httpx_logs()
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        )
        self._client = client or httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=max(settings.concurrency * 2, 10)),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def download(self, url: str, spool_dir: Path) -> Download:
        """One attempt, redirects included; the caller owns (and removes) `Download.path`."""
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise RecordingRejectedError("not a valid URL") from exc
        try:
            async with asyncio.timeout(self._settings.attempt_timeout_s):
                for _hop in range(self._settings.max_redirects + 1):
                    target = await self._guard.vet(current)
                    location = await self._request(target, spool_dir)
                    if isinstance(location, Download):
                        return location
                    current = location
        except TimeoutError as exc:
            raise TransientFetchError(
                f"{redact(current)}: no complete answer within "
                f"{self._settings.attempt_timeout_s:g}s"
            ) from exc
        raise RecordingRejectedError(f"more than {self._settings.max_redirects} redirects")

    async def _request(self, target: VettedTarget, spool_dir: Path) -> Download | httpx.URL:
        """Download, or the next URL when the answer is a redirect."""
        where = redact(target.url)
        request = self._client.build_request(
            "GET",
            target.url.copy_with(host=str(target.address)),
            headers={
                "Host": _host_header(target),
                "Accept": "audio/*, application/octet-stream;q=0.9",
                "User-Agent": "onoff-bridge-recordings",
            },
            extensions={"sni_hostname": target.host} if target.url.scheme == "https" else {},
            timeout=self._timeout,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise TransientFetchError(f"{where}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientFetchError(
                f"{where}: {type(exc).__name__}: {_scrub(exc, target)}"
            ) from exc
        try:
            status = response.status_code
            if status in _REDIRECTS and "location" in response.headers:
                try:
                    return target.url.join(response.headers["location"])
                except httpx.InvalidURL as exc:
                    raise RecordingRejectedError(f"{where}: invalid redirect location") from exc
            if status in _EXPIRED:
                raise RecordingExpiredError(f"{where}: HTTP {status}")
            if status == 429 or status >= 500:
                raise TransientFetchError(f"{where}: HTTP {status}")
            if not 200 <= status < 300:
                raise RecordingFailedError(f"{where}: HTTP {status}")
            content_type = _media_type(response.headers.get("content-type", ""))
            if not self._accepts(content_type):
                raise RecordingRejectedError(
                    f"{where}: content type {content_type or '(none)'!r} is not accepted"
                )
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > self._settings.max_bytes:
                raise RecordingRejectedError(
                    f"{where}: {length} bytes is over the {self._settings.max_bytes} limit"
                )
            return await self._stream(response, content_type, spool_dir, where)
        finally:
            await response.aclose()

    async def _stream(
        self, response: httpx.Response, content_type: str, spool_dir: Path, where: str
    ) -> Download:
        digest = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="part-", suffix=".tmp")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    # Decoded bytes: the cap also holds against a compressed bomb.
                    async for chunk in response.aiter_bytes(_CHUNK):
                        size += len(chunk)
                        if size > self._settings.max_bytes:
                            raise RecordingRejectedError(
                                f"{where}: over the {self._settings.max_bytes} bytes limit"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                except httpx.TimeoutException as exc:
                    raise TransientFetchError(f"{where}: {type(exc).__name__}") from exc
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    raise TransientFetchError(
                        f"{where}: {type(exc).__name__} while reading the body"
                    ) from exc
                out.flush()
                # On disk before the rename makes it an object, or a crash could
                # leave a short file under a name that promises this hash.
                await asyncio.to_thread(os.fsync, out.fileno())
        except BaseException:
            os.unlink(path)  # the partial download; nothing else knows its name
            raise
        return Download(path=path, sha256=digest.hexdigest(), size=size, content_type=content_type)

    def _accepts(self, content_type: str) -> bool:
        for accepted in self._settings.accepted_content_types:
            if accepted.endswith("/*"):
                if content_type.startswith(accepted[:-1]):
                    return True
            elif content_type == accepted:
                return True
        return False


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _host_header(target: VettedTarget) -> str:
    host = (
        f"[{target.host}]"
        if isinstance(target.address, IPv6Address) and ":" in target.host
        else target.host
    )
    default = SCHEMES[target.url.scheme]
    return host if target.port == default else f"{host}:{target.port}"


def _scrub(exc: Exception, target: VettedTarget) -> str:
    text = str(exc)
    query = target.url.query.decode(errors="replace")
    return text.replace(query, "…") if query else text


async def retrying(
    operation: Callable[[], Awaitable[T]],
    settings: RecordingSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Runs `operation` until it stops raising `TransientFetchError` or the deadline passes.

    Exponential backoff with "equal jitter" (half fixed, half random), so a
    crowd of workers retrying the same server spreads out. The deadline counts
    the coming wait: a retry that could only start after it is not made.
    """
    started = clock()

    def equal_jitter(state: RetryCallState) -> float:
        growth: float = 2.0 ** (state.attempt_number - 1)
        ceiling = min(settings.retry_max_delay_s, settings.retry_base_delay_s * growth)
        return ceiling / 2 + ceiling / 2 * jitter()

    def past_deadline(state: RetryCallState) -> bool:
        return clock() - started + state.upcoming_sleep > settings.retry_deadline_s

    def announce(state: RetryCallState) -> None:
        log.info(
            "retrying a recording download",
            extra={
                "attempt": state.attempt_number,
                "in_s": round(state.upcoming_sleep, 2),
                "error": _reason(state),
            },
        )

    def give_up(state: RetryCallState) -> T:
        error = state.outcome.exception() if state.outcome else None
        raise RecordingFailedError(
            f"gave up after {state.attempt_number} attempt(s): {_reason(state)}"
        ) from error

    retry = AsyncRetrying(
        retry=retry_if_exception_type(TransientFetchError),
        wait=equal_jitter,
        stop=past_deadline,
        sleep=sleep,
        before_sleep=announce,
        retry_error_callback=give_up,
    )
    return await retry(operation)


def _reason(state: RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome else None
    return error.reason if isinstance(error, TransientFetchError) else str(error)

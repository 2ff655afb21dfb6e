"""Sending one delivery the way Onoff does: any 200 is success; a 4xx, 5xx or timeout is retried
4 more times after a short delay, and then the event is dropped for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson

RETRIES = 4


@dataclass(frozen=True)
class Attempt:
    number: int  # 1 for the first try
    status: int | None  # None when there was no answer (timeout, connection error)
    error: str | None
    quarantined: bool
    elapsed_ms: float

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class SendOutcome:
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(attempt.succeeded for attempt in self.attempts)

    @property
    def last_failure(self) -> str:
        last = self.attempts[-1]
        return str(last.status) if last.status is not None else last.error or "no answer"


AttemptListener = Callable[[Attempt], None]


class WebhookSender:
    """Posts bodies to the ingress with Onoff's retry rule; every attempt goes to `on_attempt`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        *,
        retries: int = RETRIES,
        retry_delay_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["x-api-key"] = api_key
        self._retries = retries
        self._retry_delay_s = retry_delay_s
        self._timeout = httpx.Timeout(timeout_s)

    async def send(
        self, path: str, body: bytes, on_attempt: AttemptListener | None = None
    ) -> SendOutcome:
        outcome = SendOutcome()
        for number in range(1, self._retries + 2):
            if number > 1:
                await asyncio.sleep(self._retry_delay_s)
            attempt = await self._attempt(number, path, body)
            outcome.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if attempt.succeeded:
                break
        return outcome

    async def _attempt(self, number: int, path: str, body: bytes) -> Attempt:
        started = time.perf_counter()
        try:
            response = await self._client.post(
                self._base_url + path, content=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            return Attempt(number, None, f"timeout: {type(exc).__name__}", False, _ms(started))
        except httpx.HTTPError as exc:
            return Attempt(number, None, f"{type(exc).__name__}: {exc}", False, _ms(started))
        return Attempt(number, response.status_code, None, _quarantined(response), _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _quarantined(response: httpx.Response) -> bool:
    try:
        answer = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.get("status") == "quarantined"

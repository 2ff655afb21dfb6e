"""What every processor does with the records it reads: decode, keep event time, reject.

- `decode_with_retry`: a registry outage is waited out (it is not the data's
  fault), anything else the record's bytes get wrong is a `RecordDecodeError`
  for the caller to dead-letter.
- `EventClock`: the latest event time a worker has read. Retention decisions
  use it rather than the wall clock, so a replay decides what the first run did.
- `rejected_record`: the one place a processor builds a `RejectedDelivery`.
- `redact_reason` (from `schemas.redaction`): what of a reason may be logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from schemas import AvroCodec, RegistryUnavailableError
from schemas.redaction import redact_reason

# Re-exported: processors.deadletter and the tests import it from here.
__all__ = [
    "EventClock",
    "decode_with_retry",
    "from_millis",
    "redact_reason",
    "rejected_record",
    "to_millis",
]

log = logging.getLogger(__name__)

REGISTRY_FIRST_DELAY_S = 0.5
REGISTRY_MAX_DELAY_S = 30.0
MAX_REASON_CHARS = 1000


async def decode_with_retry(
    codec: AvroCodec,
    value: bytes | None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any]:
    """Decodes a record, waiting out a registry outage rather than dead-lettering good data.

    Waits 0.5 s, then twice as long each time, at most 30 s, for ever: the
    partition stalls (and /healthz says so) until the registry answers.
    """

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "registry unavailable; retrying",
            extra={"error": redact_reason(str(error)), "in_s": state.upcoming_sleep},
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RegistryUnavailableError),
        wait=wait_exponential(multiplier=REGISTRY_FIRST_DELAY_S, max=REGISTRY_MAX_DELAY_S),
        stop=stop_never,
        before_sleep=warn,
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return codec.decode(value or b"")
    raise AssertionError("unreachable: stop_never retries until the decode returns or fails")


class EventClock:
    """The latest event time read, in milliseconds since the epoch; 0 before the first."""

    def __init__(self) -> None:
        self.ms = 0

    def advance(self, when: datetime) -> None:
        self.ms = max(self.ms, to_millis(when))

    @property
    def started(self) -> bool:
        return self.ms > 0

    @property
    def now(self) -> datetime:
        return from_millis(self.ms)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(when: datetime) -> int:
    # Exact integer arithmetic: float timestamps can round a millisecond away.
    return (when - EPOCH) // _MILLISECOND


def from_millis(ms: int) -> datetime:
    return EPOCH + ms * _MILLISECOND


def rejected_record(
    source: str, topic: str, partition: int, offset: int, body: bytes, reason: str
) -> dict[str, Any]:
    """A `RejectedDelivery` for one source record; `reason` is kept whole (up to 1000 chars)."""
    return {
        "requestId": f"{topic}/{partition}/{offset}",
        "receivedAt": datetime.now(UTC),
        "source": source,
        "path": topic,
        "reason": reason[:MAX_REASON_CHARS],
        "body": body,
        "contentType": None,
        "headers": {},
        "apiKeyName": None,
        "sourcePartition": partition,
        "sourceOffset": offset,
    }

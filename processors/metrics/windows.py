"""Where a call is counted: its user key and its tumbling hour and day windows, in UTC.

A window is named by its key, '<user key>/<granularity>/<window start ISO-8601>',
which is also the key of its UserCallMetrics record. The user key comes first
and may itself hold a '/', so keys are split from the right.

A call whose start has no hour or day window that Python's datetime can hold
(its day ends past 9999-12-31, or its offset moves it before year 1) cannot be
placed: `windows_of` raises `UnplaceableCallError`, and the worker dead-letters
the record rather than crash on it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple


class UnplaceableCallError(ValueError):
    """A call that has no window: counted as `unplaceable` and dead-lettered by the worker."""


class Granularity(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]


_LENGTHS = {Granularity.HOUR: timedelta(hours=1), Granularity.DAY: timedelta(days=1)}
_GRANULARITIES = tuple(Granularity)  # iterating the enum class itself costs a generator


def user_key(call: Mapping[str, Any]) -> str | None:
    """The lowercased onoffUserEmail, else onoffUserNumber; None when the call has neither."""
    email = (call.get("onoffUserEmail") or "").strip()
    if email:
        return email.lower()
    number = (call.get("onoffUserNumber") or "").strip()
    return number or None


def window_start(moment: datetime, granularity: Granularity) -> datetime:
    utc = moment.astimezone(UTC)
    if granularity is Granularity.HOUR:
        return utc.replace(minute=0, second=0, microsecond=0)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


class Window(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: two are built per call version, and a
    # frozen dataclass's __init__ costs about twice as much. Ordered and hashed as before.
    user: str
    granularity: Granularity
    start: datetime

    @property
    def end(self) -> datetime:
        """Exclusive."""
        return self.start + self.granularity.length

    @property
    def key(self) -> str:
        return f"{self.user}/{self.granularity.value}/{self.start.isoformat()}"

    @property
    def redacted(self) -> str:
        """The key with the user (an e-mail or a phone number) replaced by a hash, for logs."""
        digest = hashlib.blake2b(self.user.encode(), digest_size=6).hexdigest()
        return f"user#{digest}/{self.granularity.value}/{self.start.isoformat()}"

    @classmethod
    def parse(cls, key: str) -> Window:
        user, granularity, start = key.rsplit("/", 2)
        return cls(user, Granularity(granularity), datetime.fromisoformat(start))


def windows_of(call: Mapping[str, Any]) -> list[Window]:
    """The windows a call version counts in: its hour and its day, or none without user or start.

    Raises UnplaceableCallError when a window cannot be represented.
    """
    user = user_key(call)
    started: datetime | None = call.get("callStarted")
    if user is None or started is None:
        return []
    try:
        windows = [Window(user, g, window_start(started, g)) for g in _GRANULARITIES]
        for window in windows:
            window.end  # noqa: B018  # computed here so that it cannot fail later
    except OverflowError as exc:
        # astimezone before year 1, or a window ending after 9999-12-31.
        raise UnplaceableCallError(
            f"cannot place the call: no hour and day window holds callStarted {started.isoformat()}"
        ) from exc
    return windows


def window_range(
    user: str, granularity: Granularity, first: datetime, last: datetime
) -> Iterator[Window]:
    """Every window of `user` whose start lies in [window of `first`, `last`]."""
    start = window_start(first, granularity)
    while start <= last:
        yield Window(user, granularity, start)
        start += granularity.length


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(moment: datetime) -> int:
    # Exact integer arithmetic: float timestamps can round a millisecond away.
    return (moment - EPOCH) // _MILLISECOND


def updated_millis(call: Mapping[str, Any]) -> int:
    """The call's lastUpdatedAt in milliseconds; UnplaceableCallError when it has no UTC time."""
    updated: datetime = call["lastUpdatedAt"]
    try:
        updated.astimezone(UTC)
    except OverflowError as exc:
        raise UnplaceableCallError(
            f"cannot place the call: lastUpdatedAt {updated.isoformat()} has no UTC time"
        ) from exc
    return to_millis(updated)


def from_millis(millis: int) -> datetime:
    return EPOCH + millis * _MILLISECOND

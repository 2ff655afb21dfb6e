"""The UserCallMetrics records the windows agent sends, written straight from a window's figures.

The worker sends one record per window and batch: about 300,000 in
bench-metrics' catch-up. Through the codec each took about 7 µs: the record
as a dict, three datetimes made and converted back to milliseconds, fifteen
fields looked up by name in the generated writer. `MetricsRecords` writes the
same bytes from the window and the `Figures` tuple: the user's string and a
window start's two timestamps are kept encoded (a user and an hour are
written over and over), and small integers come from a table.

The bytes must stay the codec's. `MetricsRecords` writes sample records both
ways when it is built and refuses to start if they differ (a schema change it
does not follow), and a property test compares them over generated windows
and figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.metrics.figures import Figures, metrics_record
from processors.metrics.windows import Granularity, Window, to_millis
from schemas import AvroCodec
from schemas.avro_writer import encode_double, encode_long

# Integers in [-SMALL, SMALL) are written from a table: every count, and most sums.
SMALL = 1 << 13
_SMALL = tuple(encode_long(n) for n in range(-SMALL, SMALL))
# Encoded users and window starts kept (a cache, cleared when full).
CACHED = 50_000

_LENGTH_MS = {g: g.length // timedelta(milliseconds=1) for g in Granularity}
# timestamp-millis values Python's datetime can hold, as metrics_record requires.
_MIN_MS = to_millis(datetime.min.replace(tzinfo=UTC))
_MAX_MS = to_millis(datetime.max.replace(tzinfo=UTC))


def _varint(n: int) -> bytes:
    if -SMALL <= n < SMALL:
        return _SMALL[n + SMALL]
    return encode_long(n)


def _string(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


_GRANULARITY = {g: _string(g.value) for g in Granularity}


class RecordMismatchError(RuntimeError):
    """The direct writer and the codec disagree: the schema changed and this module did not."""


class MetricsRecords:
    """UserCallMetrics values (framed, with the registry's schema id) of windows' figures."""

    def __init__(self, codec: AvroCodec) -> None:
        self._codec = codec
        self._header: bytes | None = None
        self._users: dict[str, bytes] = {}
        self._spans: dict[tuple[Granularity, datetime], bytes] = {}
        for window, figures in _SAMPLES:
            if self.body(window, figures) != codec.encode_body(metrics_record(window, figures)):
                raise RecordMismatchError(
                    f"the UserCallMetrics writer does not match the schema of {codec.topic}"
                )

    def encode(self, window: Window, figures: Figures) -> bytes:
        header = self._header
        if header is None:  # the registry's id, on first use as the codec gets it
            header = self._header = self._codec.frame(b"")
        return header + self.body(window, figures)

    def body(self, window: Window, figures: Figures) -> bytes:
        """What `codec.encode_body(metrics_record(window, figures))` writes."""
        (calls, inbound, outbound, answered, missed, voicemails, recorded, talk, talk_max, last) = (
            figures
        )
        if not _MIN_MS <= last <= _MAX_MS:  # as from_millis would fail in metrics_record
            raise OverflowError(f"lastUpdatedAt of {last} ms is outside the calendar")
        return b"".join(
            (
                self._user(window.user),
                self._span(window),
                _varint(calls),
                _varint(inbound),
                _varint(outbound),
                _varint(answered),
                _varint(missed),
                _varint(voicemails),
                _varint(recorded),
                _varint(talk),
                encode_double(talk / answered if answered else 0.0),
                _varint(talk_max),
                _varint(last),
            )
        )

    def _user(self, user: str) -> bytes:
        data = self._users.get(user)
        if data is None:
            if len(self._users) >= CACHED:
                self._users.clear()
            data = self._users[user] = _string(user)
        return data

    def _span(self, window: Window) -> bytes:
        """granularity, windowStart, windowEnd."""
        key = (window.granularity, window.start)
        data = self._spans.get(key)
        if data is None:
            if len(self._spans) >= CACHED:
                self._spans.clear()
            start = to_millis(window.start)
            data = self._spans[key] = (
                _GRANULARITY[window.granularity]
                + _varint(start)
                + _varint(start + _LENGTH_MS[window.granularity])
            )
        return data


_SAMPLES = (
    (
        Window("user@example.com", Granularity.HOUR, datetime(2026, 12, 3, 10, tzinfo=UTC)),
        Figures(3, 2, 1, 2, 1, 0, 1, 4000, 3000, 1_764_756_000_123),
    ),
    (
        Window("+15550100000", Granularity.DAY, datetime(1969, 7, 20, tzinfo=UTC)),
        Figures(),
    ),
    (
        Window("ünï/cödé", Granularity.DAY, datetime(9999, 12, 30, tzinfo=UTC)),
        Figures(2**31, 2**31, 0, 2**31, 0, 0, 2**31, 2**63 - 1, 2**32, _MAX_MS),
    ),
)

"""The metrics query's parameters: ranges past either end of the calendar are a 400, not a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.metrics.api import QueryError, _earlier, _windows, parse_moment
from processors.metrics.windows import Granularity


def test_moments_out_of_the_calendar_are_query_errors() -> None:
    with pytest.raises(QueryError, match="out of the calendar"):
        parse_moment("0001-01-01T00:00:00+01:00", "from")
    with pytest.raises(QueryError, match="not an ISO-8601"):
        parse_moment("yesterday", "from")
    assert parse_moment("2026-03-02", "to") == datetime(2026, 3, 2, tzinfo=UTC)
    assert _earlier(datetime(1, 1, 2, tzinfo=UTC), timedelta(days=35)).year == 1


def test_window_ranges_stop_at_the_limit_and_at_the_calendars_end() -> None:
    last_day = datetime(9999, 12, 31, tzinfo=UTC)
    with pytest.raises(QueryError, match="past the calendar's end"):
        _windows("u", Granularity.DAY, last_day - timedelta(days=2), last_day, 10)
    with pytest.raises(QueryError, match="more than 10 windows"):
        _windows("u", Granularity.DAY, datetime(1, 1, 1, tzinfo=UTC), last_day, 10)
    first = datetime(2026, 3, 1, tzinfo=UTC)
    assert len(_windows("u", Granularity.HOUR, first, first + timedelta(hours=23), 24)) == 24

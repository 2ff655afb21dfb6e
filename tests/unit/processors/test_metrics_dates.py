"""Calls dated at the ends of the calendar: the metrics core places them, or says it cannot.

Before, a call started on 9999-12-31 raised OverflowError deep in the worker
(its day window ends past datetime.max) and crashed it at every restart. Now
`plan` either places a call, with windows whose records can be written, or
raises UnplaceableCallError, which the worker dead-letters; nothing else.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.metrics.aggregation import Aggregator, plan
from processors.metrics.figures import MAX_TALK_SECONDS, metrics_record
from processors.metrics.windows import UnplaceableCallError, Window
from schemas import SchemaName
from schemas.catalog import load_schema
from tests.unit.processors.test_metrics_aggregation import call, recompute, records

OFFSETS = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=14)),
        timezone(-timedelta(hours=14)),
        timezone(timedelta(hours=23, minutes=59)),
        timezone(-timedelta(hours=23, minutes=59)),
    ]
)
# Naive bounds; the offsets then move them past either end of the calendar.
EXTREME_MOMENTS = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 3), timezones=OFFSETS),
    st.datetimes(datetime(9999, 12, 29), datetime.max, timezones=OFFSETS),
    st.datetimes(timezones=OFFSETS),
)
SCHEMA = fastavro.parse_schema(json.loads(load_schema(SchemaName.USER_CALL_METRICS)))


def writable(record: dict[str, Any]) -> None:
    fastavro.schemaless_writer(io.BytesIO(), SCHEMA, record)


@pytest.mark.parametrize(
    "started",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),  # the hour fits, the day does not
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # before year 1 in UTC
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=14))),
    ],
)
def test_a_call_no_window_can_hold_cannot_be_placed(started: datetime) -> None:
    with pytest.raises(UnplaceableCallError, match="cannot place the call"):
        plan(None, call(callStarted=started))


def test_a_talk_time_no_window_can_sum_cannot_be_placed() -> None:
    with pytest.raises(UnplaceableCallError):
        plan(None, call(callDuration=MAX_TALK_SECONDS + 1))
    _, _, updates = plan(None, call(callDuration=MAX_TALK_SECONDS))
    assert len(updates) == 2


@settings(max_examples=500, deadline=None)
@given(
    started=EXTREME_MOMENTS,
    updated=EXTREME_MOMENTS,
    horizon=st.none() | st.datetimes(timezones=st.just(UTC)),
    duration=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_any_date_is_placed_with_writable_records_or_said_unplaceable(
    started: datetime, updated: datetime, horizon: datetime | None, duration: int | None
) -> None:
    version = call(callStarted=started, lastUpdatedAt=updated, callDuration=duration)
    try:
        _, _, updates = plan(None, version, horizon)
    except UnplaceableCallError:
        return
    aggregator = Aggregator()
    for update in updates:
        window = Window.parse(update.window)
        assert window.start <= started < window.end
        aggregator.apply(update)
    for key, figures in aggregator.figures().items():
        writable(metrics_record(Window.parse(key), figures))


@settings(max_examples=200, deadline=None)
@given(starts=st.lists(EXTREME_MOMENTS, min_size=1, max_size=6))
def test_unplaceable_versions_change_nothing_for_the_rest(starts: list[datetime]) -> None:
    """Versions of one call, some unplaceable (dead-lettered, so never planned): the windows
    hold what the placeable ones alone give."""
    aggregator = Aggregator()
    placed = []
    for number, started in enumerate(starts, start=1):
        version = call(version=number, callStarted=started)
        try:
            updates = aggregator.plan(version)
        except UnplaceableCallError:
            continue
        placed.append(version)
        for update in updates:
            aggregator.apply(update)
    assert records(aggregator) == recompute(placed)

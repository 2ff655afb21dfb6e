"""The dedupe retention rule: eviction and refusal agree, so a call's versions never restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.merge import (
    Outcome,
    decide,
    evict_past_retention,
    is_evicted,
    past_retention,
)
from processors.records import EventClock
from tests.unit.processors.test_merge import T0, delivery

RETENTION = timedelta(days=7)
DAY = 24 * 3600


def test_a_call_without_call_started_is_not_restarted_after_its_eviction() -> None:
    """The bug of issue 9: evicted by lastUpdatedAt, then let through as a new call."""
    calls: dict[str, Any] = {}
    first = delivery(0, callNotes="first")
    outcome, call = decide(None, first, T0, RETENTION)
    assert (outcome, call["version"]) == (Outcome.NEW_VERSION, 1)
    calls["c-1"] = call
    later = T0 + timedelta(days=8)
    assert evict_past_retention(calls, later, RETENTION) == ["c-1"]
    assert is_evicted(calls["c-1"])
    # A delivery received now, without callStarted: new by its own times, yet the call's.
    late = delivery(8 * DAY, callNotes="a late correction")
    assert decide(calls.get("c-1"), late, later, RETENTION)[0] is Outcome.BEYOND_RETENTION


def test_a_call_past_the_retention_is_refused_before_the_eviction_timer_runs() -> None:
    _, call = decide(None, delivery(0, callNotes="n"), T0, RETENTION)
    later = T0 + timedelta(days=8)
    fresh = delivery(8 * DAY, callNotes="more")
    assert decide(call, fresh, later, RETENTION)[0] is Outcome.BEYOND_RETENTION


def test_a_new_call_is_judged_by_call_started_else_received_at() -> None:
    now = T0 + timedelta(days=30)
    old_start = delivery(30 * DAY, callStarted=T0)
    assert decide(None, old_start, now, RETENTION)[0] is Outcome.BEYOND_RETENTION
    fresh = delivery(30 * DAY)
    assert decide(None, fresh, now, RETENTION)[0] is Outcome.NEW_VERSION
    replayed = delivery(0)  # received 30 days before the clock: a replay of old raw data
    assert decide(None, replayed, now, RETENTION)[0] is Outcome.BEYOND_RETENTION


def test_a_live_call_still_takes_new_versions() -> None:
    _, call = decide(None, delivery(0, callStarted=T0), T0, RETENTION)
    update = delivery(3 * DAY, callStarted=T0, callNotes="later")
    outcome, updated = decide(call, update, T0 + timedelta(days=3), RETENTION)
    assert (outcome, updated["version"]) == (Outcome.NEW_VERSION, 2)


_maybe_start = st.none() | st.integers(-20, 60).map(lambda d: T0 + timedelta(days=d))
_step = st.one_of(
    st.builds(
        lambda call_id, received, **fields: (
            "deliver",
            {**delivery(received, **fields), "id": call_id},
        ),
        call_id=st.sampled_from(["c-1", "c-2"]),
        received=st.integers(0, 60 * DAY),
        callStarted=_maybe_start,
        callNotes=st.none() | st.sampled_from(["a", "bb", "ccc"]),
        callDuration=st.none() | st.integers(0, 600),
        callRecordingUrl=st.none() | st.sampled_from(["https://r/1", "https://r/2"]),
    ),
    st.just(("evict", None)),
)


@settings(max_examples=500, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=25), retention_days=st.integers(0, 20))
def test_versions_per_call_are_one_to_n_whatever_is_missing_and_whenever_eviction_runs(
    steps: list[tuple[str, Any]], retention_days: int
) -> None:
    retention = timedelta(days=retention_days)
    calls: dict[str, Any] = {}
    clock = EventClock()
    versions: dict[str, list[int]] = {}
    for kind, event in steps:
        if kind == "evict":
            if clock.started:
                evicted = evict_past_retention(calls, clock.now, retention)
                # Eviction drops only calls every later delivery is refused for.
                for key in evicted:
                    assert past_retention(calls[key], clock.now, retention)
            continue
        clock.advance(event["ingest"]["receivedAt"])
        state = calls.get(event["id"])
        outcome, call = decide(state, event, clock.now, retention)
        if state is not None and past_retention(state, clock.now, retention):
            assert outcome is Outcome.BEYOND_RETENTION
        if outcome is Outcome.NEW_VERSION:
            calls[event["id"]] = call
            versions.setdefault(event["id"], []).append(call["version"])
    for emitted in versions.values():
        assert emitted == list(range(1, len(emitted) + 1))

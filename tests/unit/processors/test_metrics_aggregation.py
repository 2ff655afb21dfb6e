"""The metrics aggregation: exact cases, and properties over any order of versions and updates."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from processors.metrics.aggregation import CALL_FIELDS, Aggregator, Decision, Update, plan
from processors.metrics.figures import metrics_record
from processors.metrics.tally import Applied
from processors.metrics.windows import (
    Granularity,
    UnplaceableCallError,
    Window,
    user_key,
    window_start,
)
from schemas import SchemaName, load_schema
from tests.unit.schemas.avro_strategies import values

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def call(call_id: str = "c-1", version: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "version": version,
        "onoffUserEmail": "Ada@Example.com",
        "onoffUserNumber": "+15550100001",
        "callStarted": T0 + timedelta(minutes=10),
        "callDirection": "INBOUND",
        "callStatus": "ANSWERED",
        "callDuration": 60,
        "voicemailUrls": [],
        "callRecordingUrls": [],
        "lastUpdatedAt": T0 + timedelta(minutes=20, seconds=version),
        **fields,
    }


def recompute(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """UserCallMetrics per window key from each call's final version, the plain way."""
    final: dict[str, dict[str, Any]] = {}
    for c in calls:
        if c["id"] not in final or c["version"] > final[c["id"]]["version"]:
            final[c["id"]] = c
    grouped: dict[tuple[str, Granularity, datetime], list[dict[str, Any]]] = defaultdict(list)
    for c in final.values():
        email, number = c.get("onoffUserEmail"), c.get("onoffUserNumber")
        user = email.lower() if email else number
        if user is None or c.get("callStarted") is None:
            continue
        for g in Granularity:
            grouped[(user, g, window_start(c["callStarted"], g))].append(c)
    expected = {}
    for (user, g, start), members in grouped.items():
        status = [(c.get("callStatus") or "").upper() for c in members]
        answered = [c for c, s in zip(members, status, strict=True) if s == "ANSWERED"]
        voicemails = [
            c
            for c, s in zip(members, status, strict=True)
            if s != "ANSWERED" and (s == "VOICEMAIL" or c["voicemailUrls"])
        ]
        talk = [c.get("callDuration") or 0 for c in answered]
        expected[Window(user, g, start).key] = {
            "userKey": user,
            "granularity": g.value,
            "windowStart": start,
            "windowEnd": start + g.length,
            "callsTotal": len(members),
            "inbound": sum(c["callDirection"] == "INBOUND" for c in members),
            "outbound": sum(c["callDirection"] == "OUTBOUND" for c in members),
            "answered": len(answered),
            "missed": len(members) - len(answered) - len(voicemails),
            "voicemails": len(voicemails),
            "recorded": sum(bool(c["callRecordingUrls"]) for c in members),
            "talkSecondsTotal": sum(talk),
            "talkSecondsAvg": sum(talk) / len(answered) if answered else 0.0,
            "talkSecondsMax": max(talk, default=0),
            "lastUpdatedAt": max(c["lastUpdatedAt"] for c in members),
        }
    return expected


def records(aggregator: Aggregator) -> dict[str, dict[str, Any]]:
    return {
        key: metrics_record(Window.parse(key), figures)
        for key, figures in aggregator.figures().items()
    }


def test_a_new_version_moving_a_call_to_another_user_and_hour_retracts_the_old_one() -> None:
    aggregator = Aggregator()
    v1 = call(version=1)
    v2 = call(version=2, onoffUserEmail=None, callStarted=T0 + timedelta(hours=1, minutes=5))
    for version in (v1, v2, v1, v2):
        for update in aggregator.plan(version):
            aggregator.apply(update)
    figures = aggregator.figures()
    assert set(figures) == {
        "+15550100001/hour/2026-03-02T10:00:00+00:00",
        "+15550100001/day/2026-03-02T00:00:00+00:00",
    }
    assert all(f.calls_total == 1 and f.talk_seconds_total == 60 for f in figures.values())
    assert records(aggregator) == recompute([v1, v2])


def test_repeats_send_the_same_updates_and_stale_versions_send_none() -> None:
    decision, state, first = plan(None, call(version=2))
    assert decision is Decision.NEW_VERSION and state is not None and state.version == 2
    assert plan(state, call(version=2)) == (Decision.REPEAT, state, first)
    assert plan(state, call(version=1)) == (Decision.STALE, state, [])


def test_windows_past_the_horizon_get_no_update() -> None:
    assert plan(None, call(), T0 + timedelta(days=1)) == (Decision.LATE, None, [])
    decision, state, updates = plan(None, call(), T0 + timedelta(hours=2))
    assert decision is Decision.NEW_VERSION and state is not None
    assert [Window.parse(u.window).granularity for u in updates] == [Granularity.DAY]
    # A later version that is all past the horizon changes nothing, and retracts nothing.
    assert plan(state, call(version=2), T0 + timedelta(days=1)) == (Decision.LATE, state, [])


def test_a_window_keeps_the_highest_version_of_each_call() -> None:
    aggregator = Aggregator()
    key = "ada@example.com/day/2026-03-02T00:00:00+00:00"
    assert aggregator.apply(Update(key, "c-1", [2, 0, None])) is Applied.CHANGED
    assert aggregator.apply(Update(key, "c-1", [1, 0, [1] * 7])) is Applied.STALE
    assert aggregator.apply(Update(key, "c-1", [2, 0, None])) is Applied.REPEAT
    assert aggregator.figures() == {}
    assert aggregator.shares[key]["c-1"].current.version == 2


def test_statuses_and_talk_time() -> None:
    calls = [
        call("a", callStatus="answered", callDuration=30),
        call("b", callStatus="VOICEMAIL", callDuration=45),
        call("c", callStatus="MISSED", voicemailUrls=["https://v.example/c.mp3"]),
        call("d", callStatus="BUSY", callDirection="OUTBOUND", callDuration=5),
        call("e", callStatus=None, callRecordingUrls=["https://r.example/e.mp3"]),
    ]
    aggregator = Aggregator()
    for c in calls:
        for update in aggregator.plan(c):
            aggregator.apply(update)
    day = records(aggregator)["ada@example.com/day/2026-03-02T00:00:00+00:00"]
    assert (day["callsTotal"], day["answered"], day["voicemails"], day["missed"]) == (5, 1, 2, 2)
    assert (day["inbound"], day["outbound"], day["recorded"]) == (4, 1, 1)
    assert (day["talkSecondsTotal"], day["talkSecondsAvg"], day["talkSecondsMax"]) == (30, 30.0, 30)
    assert records(aggregator) == recompute(calls)


def test_user_keys_and_window_keys() -> None:
    assert user_key({"onoffUserEmail": " Ada@Example.COM ", "onoffUserNumber": "+1"}) == (
        "ada@example.com"
    )
    assert user_key({"onoffUserEmail": "", "onoffUserNumber": "+1555"}) == "+1555"
    assert user_key({"onoffUserEmail": None, "onoffUserNumber": None}) is None
    window = Window("we/ird@example.com", Granularity.HOUR, T0)
    assert window.key == "we/ird@example.com/hour/2026-03-02T09:00:00+00:00"
    assert Window.parse(window.key) == window
    # What logs may say of a window: the user hashed, the same hash for the same user.
    assert "ird@example.com" not in window.redacted
    assert window.redacted.endswith("/hour/2026-03-02T09:00:00+00:00")
    assert (
        window.redacted.split("/")[0]
        == Window(window.user, Granularity.DAY, T0).redacted.split("/")[0]
    )
    assert window.end == T0 + timedelta(hours=1)
    late = datetime(2026, 3, 2, 23, 59, 59, 999000, tzinfo=UTC)
    assert window_start(late, Granularity.DAY) == datetime(2026, 3, 2, tzinfo=UTC)


USERS = st.sampled_from(["Ada@Example.com", "ada@example.com", "bo@example.com", None])
NUMBERS = st.sampled_from(["+15550100001", "+15550100002", None])
STARTS = st.sampled_from(
    [T0 + timedelta(minutes=m) for m in (0, 59, 60, 61, 24 * 60 - 1, 15 * 60, 24 * 60 + 5)] + [None]
)


@st.composite
def version_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "onoffUserEmail": draw(USERS),
        "onoffUserNumber": draw(NUMBERS),
        "callStarted": draw(STARTS),
        "callDirection": draw(st.sampled_from(["INBOUND", "OUTBOUND", None])),
        "callStatus": draw(st.sampled_from(["ANSWERED", "VOICEMAIL", "MISSED", "BUSY", None])),
        "callDuration": draw(st.none() | st.integers(0, 3600)),
        "voicemailUrls": draw(st.sampled_from([[], ["https://v.example/1.mp3"]])),
        "callRecordingUrls": draw(st.sampled_from([[], ["https://r.example/1.mp3"]])),
    }


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Every version of a few calls, each version with its own user, start and outcome."""
    versions = []
    for n in range(draw(st.integers(1, 6))):
        for version in range(1, draw(st.integers(1, 4)) + 1):
            versions.append(call(f"c-{n}", version, **draw(version_fields())))
    return versions


def shuffled_with_repeats(data: st.DataObject, items: list[Any]) -> list[Any]:
    repeats = data.draw(st.lists(st.sampled_from(items), max_size=len(items))) if items else []
    return data.draw(st.permutations([*items, *repeats]))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_order_and_repeats_of_versions_and_updates_give_the_recomputation(
    data: st.DataObject,
) -> None:
    versions = data.draw(histories())
    deliveries = shuffled_with_repeats(data, versions)
    aggregator = Aggregator()
    updates = [u for version in deliveries for u in aggregator.plan(version)]
    # Updates reach the windows side in any order, some of them twice (after rebalances).
    for update in shuffled_with_repeats(data, updates):
        aggregator.apply(update)
    assert records(aggregator) == recompute(versions)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_a_repeat_of_the_last_versions_heals_lost_updates(data: st.DataObject, seed: int) -> None:
    versions = data.draw(histories())
    aggregator = Aggregator()
    updates = [
        u for version in data.draw(st.permutations(versions)) for u in aggregator.plan(version)
    ]
    # A crash lost any of them: the call states were saved, the updates not all sent.
    lost = random.Random(seed)
    for update in updates:
        if lost.random() < 0.5:
            aggregator.apply(update)
    # Replayed from the last committed offset, the final versions come again.
    final = {c["id"]: c for c in sorted(versions, key=lambda c: c["version"])}
    for version in final.values():
        for update in aggregator.plan(version):
            aggregator.apply(update)
    assert records(aggregator) == recompute(versions)


CALL_SCHEMA = json.loads(load_schema(SchemaName.CALL))


# Realistic values for what plan reads, drawn over the random ones half the time:
# random strings are seldom a status, random longs seldom a placeable moment.
REALISTIC = st.fixed_dictionaries(
    {
        "onoffUserEmail": st.sampled_from(["ada@example.com", "Bram@Example.org", None]),
        "onoffUserNumber": st.sampled_from(["+15550100001", None]),
        "callStarted": st.integers(1_772_409_600_000, 1_772_409_600_000 + 86_400_000 * 3),
        "lastUpdatedAt": st.integers(1_772_409_600_000, 1_772_409_600_000 + 86_400_000 * 3),
        "callStatus": st.sampled_from(["ANSWERED", "MISSED", "VOICEMAIL", None]),
        "callDirection": st.sampled_from(["INBOUND", "OUTBOUND", None]),
        "callDuration": st.none() | st.integers(1, 10_000),
        "voicemailUrls": st.lists(st.just("https://example.com/v"), max_size=2),
        "callRecordingUrls": st.lists(st.just("https://example.com/r"), max_size=2),
    }
)


def decoded_call(data: st.DataObject) -> dict[str, Any]:
    """A Call as the worker's codec reads it: any value fastavro writes, read back."""
    parsed = fastavro.parse_schema(CALL_SCHEMA)
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, parsed, data.draw(values(CALL_SCHEMA, {})) | data.draw(REALISTIC | st.just({}))
    )
    try:
        record = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), parsed, None)
    except OverflowError:  # a timestamp past year 9999: written, but no datetime holds it
        reject()
    assert isinstance(record, dict)
    return record


def planned(state: Any, version: dict[str, Any]) -> Any:
    try:
        return plan(state, version)
    except (UnplaceableCallError, OverflowError) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_plan_decides_the_same_on_the_fields_the_worker_decodes(data: st.DataObject) -> None:
    """The worker reads only CALL_FIELDS of each Call: nothing plan reads may be missing."""
    earlier, version = decoded_call(data), decoded_call(data)
    before = planned(None, earlier)
    state = before[1] if isinstance(before, tuple) else None
    projected = {name: value for name, value in version.items() if name in CALL_FIELDS}
    assert planned(state, projected) == planned(state, version)

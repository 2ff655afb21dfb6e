"""The fold of deliveries into a call: exact sequences, and properties over any order."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.merge import Outcome, content, fold

T0 = datetime(2026, 3, 2, 9, 21, 41, tzinfo=UTC)


def delivery(received_s: int = 0, **fields: Any) -> dict[str, Any]:
    body = {"id": "c-1", "eventName": "CDR", **fields}
    digest = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()
    return {
        "id": "c-1",
        "eventName": "CDR",
        **fields,
        "ingest": {
            "receivedAt": T0 + timedelta(seconds=received_s),
            "requestId": f"r-{received_s}",
            "contentSha256": digest,
            "apiKeyName": "primary",
            "path": "/v1/onoff/cdr",
        },
    }


def fold_all(deliveries: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[Outcome]]:
    call: dict[str, Any] | None = None
    outcomes = []
    for d in deliveries:
        outcome, folded = fold(call, d)
        outcomes.append(outcome)
        if outcome is Outcome.NEW_VERSION:
            call = folded
    return call, outcomes


FIRST: dict[str, Any] = dict(
    onoffUserEmail="ada@example.com",
    callStarted=T0 - timedelta(minutes=6),
    callEnded=T0,
    callDuration=396,
    callDirection="INBOUND",
    callStatus="ANSWERED",
    callNotes="Asked for the March invoice.",
    tags=[{"tagId": "t-1", "tagName": "Billing", "tagColor": "#32A8FF"}],
)
UPDATE = {
    **FIRST,
    "callNotes": "Asked for the March invoice. Sent it by email after the call.",
    "tags": [*FIRST["tags"], {"tagId": "t-7", "tagName": "Follow-up", "tagColor": "#F5A623"}],
}


def test_retry_update_late_retry_and_recording_make_three_versions() -> None:
    first = delivery(0, **FIRST)
    retry = {**first, "ingest": {**first["ingest"], "receivedAt": T0 + timedelta(seconds=3)}}
    update = delivery(300, **UPDATE)
    late_retry = {**first, "ingest": {**first["ingest"], "receivedAt": T0 + timedelta(seconds=400)}}
    recording = delivery(480, **{**UPDATE, "callRecordingUrl": "https://rec.example/c-1.mp3"})
    recording["eventName"] = "RECORDING"

    call, outcomes = fold_all([first, retry, update, late_retry, recording])

    assert outcomes == [
        Outcome.NEW_VERSION,
        Outcome.DUPLICATE,
        Outcome.NEW_VERSION,
        Outcome.DUPLICATE,
        Outcome.NEW_VERSION,
    ]
    assert call is not None
    assert call["version"] == 3
    assert call["deliveryCount"] == 3
    assert call["callNotes"] == UPDATE["callNotes"]
    assert [t["tagId"] for t in call["tags"]] == ["t-1", "t-7"]
    assert call["callRecordingUrls"] == ["https://rec.example/c-1.mp3"]
    assert call["eventKinds"] == ["CDR", "RECORDING"]
    assert call["firstSeenAt"] == T0
    assert call["lastUpdatedAt"] == T0 + timedelta(seconds=480)


def test_an_older_delivery_arriving_late_erases_nothing() -> None:
    update = delivery(300, **UPDATE, callRecordingUrl="https://rec.example/c-1.mp3")
    older = delivery(0, **FIRST)
    call, outcomes = fold_all([update, older])
    assert outcomes == [Outcome.NEW_VERSION, Outcome.UNCHANGED]
    assert call is not None
    assert call["callNotes"] == UPDATE["callNotes"]
    assert len(call["tags"]) == 2
    assert call["callRecordingUrls"] == ["https://rec.example/c-1.mp3"]


def test_identity_conflicts_are_settled_by_a_fixed_preference_not_arrival() -> None:
    early = delivery(0, externalName="Bram Keller")
    late = delivery(60, externalName="B. Keller", externalEmail="bram@example.org")
    forward, _ = fold_all([early, late])
    backward, _ = fold_all([late, early])
    assert forward is not None and backward is not None
    assert forward["externalName"] == backward["externalName"] == "Bram Keller"
    assert forward["externalEmail"] == backward["externalEmail"] == "bram@example.org"


def test_status_prefers_answered_over_voicemail_over_missed() -> None:
    for statuses, expected in [
        (["MISSED", "ANSWERED"], "ANSWERED"),
        (["VOICEMAIL", "MISSED"], "VOICEMAIL"),
        (["REJECTED", "BUSY"], "BUSY"),
        (["BUSY", "MISSED"], "MISSED"),
    ]:
        call, _ = fold_all([delivery(i, callStatus=s) for i, s in enumerate(statuses)])
        assert call is not None and call["callStatus"] == expected


def test_a_replayed_delivery_re_emits_nothing_and_a_recomputed_version_is_identical() -> None:
    deliveries = [delivery(0, **FIRST), delivery(300, **UPDATE)]
    first_run, _ = fold_all(deliveries)
    second_run, _ = fold_all(deliveries)
    assert first_run == second_run
    outcome, _ = fold(first_run, deliveries[1])
    assert outcome is Outcome.DUPLICATE


# Deliveries drawn from a small pool of values, so conflicts are frequent.
_texts = st.none() | st.sampled_from(["a", "b", "ab", "ba", "abc"])
_times = st.none() | st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))
_tags = st.none() | st.lists(
    st.fixed_dictionaries(
        {
            "tagId": st.none() | st.sampled_from(["t1", "t2"]),
            "tagName": _texts,
            "tagColor": st.none() | st.sampled_from(["#000000", "#FFFFFF"]),
        }
    ),
    max_size=3,
)
_deliveries = st.lists(
    st.builds(
        lambda received, **fields: delivery(received, **fields),
        received=st.integers(0, 10_000),
        eventName=st.sampled_from(["CDR", "VM", "RECORDING", "NEW"]),
        onoffUserName=_texts,
        externalName=_texts,
        callStarted=_times,
        callEnded=_times,
        callDuration=st.none() | st.integers(0, 600),
        callStatus=st.none() | st.sampled_from(["ANSWERED", "MISSED", "VOICEMAIL", "BUSY", "x"]),
        callNotes=_texts,
        callRecordingUrl=_texts,
        voicemailUrl=_texts,
        tags=_tags,
        extraJson=st.none() | st.sampled_from(['{"a":1}', '{"a":2}', '{"b":[1]}']),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(deliveries=_deliveries, data=st.data())
def test_any_order_with_any_repeats_ends_in_the_same_call(
    deliveries: list[dict[str, Any]], data: st.DataObject
) -> None:
    reference, _ = fold_all(deliveries)
    shuffled = data.draw(st.permutations(deliveries))
    repeats = data.draw(st.lists(st.sampled_from(deliveries), max_size=4))
    position = data.draw(st.integers(0, len(shuffled)))
    replayed, _ = fold_all([*shuffled[:position], *repeats, *shuffled[position:]])
    assert reference is not None and replayed is not None
    assert content(replayed) == content(reference)


@settings(max_examples=200, deadline=None)
@given(deliveries=_deliveries)
def test_versions_count_up_without_gaps_and_folding_again_changes_nothing(
    deliveries: list[dict[str, Any]],
) -> None:
    call: dict[str, Any] | None = None
    versions = []
    for d in deliveries:
        outcome, folded = fold(call, d)
        if outcome is Outcome.NEW_VERSION:
            call = folded
            versions.append(folded["version"])
    assert versions == list(range(1, len(versions) + 1))
    for d in deliveries:
        assert fold(call, d)[0] is not Outcome.NEW_VERSION

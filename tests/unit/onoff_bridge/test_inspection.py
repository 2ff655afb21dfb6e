"""The call report, from records to lines, without a broker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from onoff_bridge.deadletters import REPLAY_HEADER
from onoff_bridge.inspection import build_report, changes, render
from onoff_bridge.partitions import ReadRecord
from processors.merge import Outcome, fold
from processors.metrics.figures import Figures, metrics_record
from processors.metrics.windows import windows_of
from processors.recordings.processor import link_digest, record_key
from schemas.settings import TopicNames
from tests.unit.processors.test_merge import FIRST, T0, delivery

TOPICS = TopicNames()
LINK = "https://cdn.example/rec.mp3?sig=secret-signature"


def read(topic: str, offset: int, key: str, headers: dict[str, bytes] | None = None) -> ReadRecord:
    return ReadRecord(topic, 2, offset, 0, key.encode(), b"", headers or {})


def scenario() -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
    """Four deliveries of c-1 (one a repeat, one replayed) and one of another call."""
    first = delivery(0, **FIRST)
    recording = delivery(60, **(FIRST | {"eventName": "RECORDING", "callRecordingUrl": LINK}))
    nothing_new = delivery(90, **(FIRST | {"callStatus": "MISSED"}))  # status ranks lower
    other = delivery(5, **FIRST) | {"id": "c-9"}
    events = [first, first, other, recording, nothing_new]
    raw = [
        (read(TOPICS.cdr_raw, n, e["id"], {REPLAY_HEADER: b"x"} if n == 3 else None), e)
        for n, e in enumerate(events)
    ]
    versions: list[dict[str, Any]] = []
    call: dict[str, Any] | None = None
    for event in events:
        if event["id"] != "c-1":
            continue
        outcome, folded = fold(call, event)
        if outcome is Outcome.NEW_VERSION:
            call = folded
            versions.append(folded)
    calls = [(read(TOPICS.calls, n, "c-1"), v) for n, v in enumerate([*versions, versions[-1]])]
    return raw, calls, versions


def test_each_delivery_gets_its_fate_and_each_version_its_changes() -> None:
    raw, calls, versions = scenario()
    report = build_report("c-1", raw, calls, [], [])
    assert [d.fate for d in report.deliveries] == [
        "version 1",
        "a repeat of offset 0: dropped",
        "version 2",
        "no version: it changed nothing, or dedupe has not read it yet",
    ]
    assert [d.replayed for d in report.deliveries] == [False, False, True, False]
    assert [(v.number, v.repeat) for v in report.versions] == [(1, False), (2, False), (2, True)]
    assert {c.field for c in report.versions[1].changes} == {"eventKinds", "callRecordingUrls"}
    assert changes(versions[0], versions[0]) == ()


def test_personal_values_and_links_stay_hidden_unless_asked() -> None:
    raw, calls, _versions = scenario()
    report = build_report("c-1", raw, calls, [], [])
    text = "\n".join(render(report, TOPICS))
    assert "onoffUserEmail (hidden: personal)" in text and "ada@example.com" not in text
    assert "callNotes (hidden: personal)" in text and "invoice" not in text
    assert f"callRecordingUrls: none -> ['{link_digest(LINK)}']" in text
    assert "secret-signature" not in text
    assert "callStatus: none -> ANSWERED" in text and "tags: none -> [Billing]" in text
    shown = "\n".join(render(report, TOPICS, show_personal=True))
    assert "ada@example.com" in shown and "invoice" in shown
    assert "secret-signature" not in shown


def test_links_without_a_record_and_calls_without_links_say_so() -> None:
    raw, calls, _versions = scenario()
    report = build_report("c-1", raw, calls, [], [])
    [link] = report.links
    assert (link.kind, link.first_version, link.record) == ("recording", 2, None)
    assert "not handled it" in "\n".join(render(report, TOPICS))
    stored = {"callId": "c-1", "status": "expired", "fetchedAt": T0, "error": "HTTP 410"}
    key = record_key("c-1", "recording", LINK)
    report = build_report("c-1", raw, calls, [(read(TOPICS.recordings, 0, key), stored)], [])
    assert "(from v2): expired, at 2026-03-02T09:21:41Z, error: HTTP 410" in "\n".join(
        render(report, TOPICS)
    )
    plain = build_report("c-1", raw[:2], calls[:1], [], [])
    assert "carries a recording or voicemail link: Onoff sent none" in "\n".join(
        render(plain, TOPICS)
    )


def test_windows_of_the_latest_version_count_and_the_others_are_retracted() -> None:
    raw, calls, versions = scenario()
    moved = versions[-1] | {"version": 3, "callStarted": FIRST["callStarted"] - timedelta(hours=2)}
    calls = [*calls, (read(TOPICS.calls, 9, "c-1"), moved)]
    now, before = windows_of(moved), windows_of(versions[0])
    figures = Figures(calls_total=1, inbound=1, answered=1, talk_seconds_total=396)
    metrics = [(read(TOPICS.user_call_metrics, 0, w.key), metrics_record(w, figures)) for w in now]
    report = build_report("c-1", raw, calls, [], metrics)
    assert {w.key for w in report.windows if w.counted} == {w.key for w in now}
    assert {w.key for w in report.windows if not w.counted} == {before[0].key}  # the old hour
    text = "\n".join(render(report, TOPICS))
    assert "counts in 2 windows" in text and "ada@example.com" not in text
    assert "retracted from <user>/hour/" in text and "callsTotal 1" in text


def test_an_unknown_id_says_nothing_was_found_and_where_it_looked() -> None:
    report = build_report("nope", [], [], [], [])
    report.partitions_read = [(TOPICS.cdr_raw, 4), (TOPICS.calls, 4)]
    text = "\n".join(render(report, TOPICS))
    assert "nothing found" in text and "onoff.cdr.raw[4]" in text

"""verify's checks on records in memory: what agrees passes, and each kind of mismatch is named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from onoff_bridge.simulation.audio import audio_bytes, audio_sha256
from onoff_bridge.simulation.ledger import Ledger, open_ledger, read_ledger
from onoff_bridge.simulation.readback import ReadRecord
from onoff_bridge.simulation.stored import StoredObjects
from onoff_bridge.simulation.traffic import AudioLink, Delivery, DeliveryKind, LinkBehaviour
from onoff_bridge.simulation.verify import Checks, TopicRecords, check, stored_uris
from processors.merge import fold
from processors.recordings.settings import RecordingSettings

RECEIVED = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
BODIES = [
    {"id": "c1", "eventName": "CDR", "onoffUserEmail": "a@x.test", "callStatus": "ANSWERED"},
    {"id": "c1", "eventName": "CDR", "onoffUserEmail": "a@x.test", "callNotes": "more"},
]
CHECKS = Checks(recordings=False, metrics=False)


def _ledger(tmp_path: Path) -> Ledger:
    path = tmp_path / "ledger.jsonl"
    with open_ledger(path) as ledger:
        for seq, body in enumerate(BODIES):
            delivery = Delivery(0, seq, DeliveryKind.CALL, "/v1/onoff/cdr", body)
            ledger.event(delivery, orjson.dumps(body))
            ledger.answer(delivery, 1, 200, None, False, 1.0)
    return read_ledger(path)


def _topics(ledger: Ledger) -> TopicRecords:
    topics = TopicRecords()
    call: dict[str, Any] | None = None
    for offset, event in enumerate(ledger.events.values()):
        raw = {
            **event.body,
            "callStarted": None,
            "ingest": {"receivedAt": RECEIVED, "contentSha256": event.content_sha256},
        }
        topics.cdr_raw.append(ReadRecord("c1", raw, 0, offset))
        _outcome, call = fold(call, raw)
        topics.calls.append(ReadRecord("c1", call, 0, offset))
    return topics


def test_topics_that_agree_with_the_ledger_pass(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    report = check(ledger, _topics(ledger), CHECKS)
    assert report.ok, report.problems


def test_an_accepted_event_missing_from_the_raw_topic_is_named(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    topics = _topics(ledger)
    del topics.cdr_raw[1]
    report = check(ledger, topics, CHECKS)
    assert any("seq 1" in p and "not in onoff.cdr.raw" in p for p in report.problems)


def test_a_version_gap_and_a_differing_repeat_are_named(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    topics = _topics(ledger)
    second = topics.calls[1].value
    topics.calls[1] = ReadRecord("c1", {**second, "version": 3}, 0, 1)
    topics.calls.append(ReadRecord("c1", {**topics.calls[0].value, "callNotes": "x"}, 0, 2))
    problems = check(ledger, topics, CHECKS).problems
    assert any("jumped from version 1 to 3" in p for p in problems), problems
    assert any("version 1 repeated with other content" in p for p in problems), problems


def test_a_final_state_that_is_not_the_merge_is_named(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    topics = _topics(ledger)
    last = topics.calls[-1]
    topics.calls[-1] = ReadRecord("c1", {**last.value, "callNotes": "other"}, 0, last.offset)
    problems = check(ledger, topics, CHECKS).problems
    assert any("differs from the merge" in p and "callNotes" in p for p in problems), problems


def test_calls_the_processors_dead_lettered_pass_only_with_their_dead_letters(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path)
    topics = _topics(ledger)
    # Dedupe refused every delivery of c1 (past its retention): no call, two dead letters.
    topics.calls.clear()
    problems = check(ledger, topics, CHECKS).problems
    assert any("no call" in p for p in problems), problems
    topics.deadletters = [
        ReadRecord(None, {"source": "dedupe", "sourcePartition": 0, "sourceOffset": n}, 0, n)
        for n in (0, 1)
    ]
    assert check(ledger, topics, CHECKS).ok


def test_an_unplaceable_call_passes_the_metrics_only_when_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    body = {"id": "p1", "eventName": "CDR", "onoffUserEmail": "a@x.test"}
    with open_ledger(path) as writer:
        delivery = Delivery(0, 0, DeliveryKind.CALL, "/v1/onoff/cdr", body)
        writer.event(delivery, orjson.dumps(body))
        writer.answer(delivery, 1, 200, None, False, 1.0)
    ledger = read_ledger(path)
    call = {
        "id": "p1",
        "version": 1,
        "onoffUserEmail": "a@x.test",
        "callStarted": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "lastUpdatedAt": RECEIVED,
    }
    topics = TopicRecords(calls=[ReadRecord("p1", call, 2, 7)])
    metrics_only = Checks(raw=False, calls=False, recordings=False, metrics=True)
    problems = check(ledger, topics, metrics_only).problems
    assert problems == ["metrics: p1 cannot be placed and is not in the dead-letter topic"]
    dead = {"source": "metrics", "sourcePartition": 2, "sourceOffset": 7}
    topics.deadletters = [ReadRecord(None, dead, 0, 0)]
    assert check(ledger, topics, metrics_only).ok


AUDIO_BASE = "http://127.0.0.1:1"
RECORDED = "/audio/ok/c2/recording.mp3"


def _recorded(tmp_path: Path) -> tuple[Ledger, TopicRecords, Path]:
    """A call with one recording link; its record says stored, and the store holds it."""
    link = AudioLink(RECORDED, AUDIO_BASE + RECORDED, "c2", "recording", LinkBehaviour.OK)
    body = {
        "id": "c2",
        "eventName": "RECORDING",
        "onoffUserEmail": "b@x.test",
        "callStatus": "ANSWERED",
        "callRecordingUrl": link.url,
    }
    path = tmp_path / "ledger.jsonl"
    with open_ledger(path) as writer:
        writer.audio(link)
        delivery = Delivery(0, 0, DeliveryKind.RECORDING, "/v1/onoff/cdr", body)
        writer.event(delivery, orjson.dumps(body))
        writer.answer(delivery, 1, 200, None, False, 1.0)
    ledger = read_ledger(path)
    event = ledger.events[0]
    raw = {**body, "ingest": {"receivedAt": RECEIVED, "contentSha256": event.content_sha256}}
    _outcome, call = fold(None, raw)
    stored = tmp_path / "store" / "recording.mp3"
    stored.parent.mkdir()
    stored.write_bytes(audio_bytes(RECORDED))
    record = {
        "callId": "c2",
        "kind": "recording",
        "sourceUrl": link.url,
        "status": "stored",
        "storageUri": stored.as_uri(),
        "sha256": audio_sha256(RECORDED),
        "fetchedAt": RECEIVED,
    }
    topics = TopicRecords(
        cdr_raw=[ReadRecord("c2", raw, 0, 0)],
        calls=[ReadRecord("c2", call, 0, 0)],
        recordings=[ReadRecord("c2/recording", record, 0, 0)],
    )
    return ledger, topics, stored


def _read_back(ledger: Ledger, topics: TopicRecords) -> TopicRecords:
    store = StoredObjects(RecordingSettings())
    topics.stored = {uri: store.digest(uri) for uri in stored_uris(ledger, topics.recordings)}
    return topics


RECORDING_CHECKS = Checks(metrics=False)


def test_a_stored_recording_is_hashed_from_the_store(tmp_path: Path) -> None:
    ledger, topics, _stored = _recorded(tmp_path)
    report = check(ledger, _read_back(ledger, topics), RECORDING_CHECKS)
    assert report.ok, report.problems
    assert "1 stored right" in " ".join(report.notes)


def test_a_store_holding_other_bytes_than_the_record_says_is_named(tmp_path: Path) -> None:
    ledger, topics, stored = _recorded(tmp_path)
    stored.write_bytes(audio_bytes(RECORDED)[:-1])  # the record still claims the right sha256
    problems = check(ledger, _read_back(ledger, topics), RECORDING_CHECKS).problems
    assert any("the store holds" in p and "c2/recording" in p for p in problems), problems


def test_a_stored_recording_missing_from_the_store_is_named(tmp_path: Path) -> None:
    ledger, topics, stored = _recorded(tmp_path)
    stored.unlink()
    problems = check(ledger, _read_back(ledger, topics), RECORDING_CHECKS).problems
    assert any("the store holds unreadable" in p for p in problems), problems


def test_a_stored_recording_not_read_back_is_named(tmp_path: Path) -> None:
    ledger, topics, _stored = _recorded(tmp_path)
    problems = check(ledger, topics, RECORDING_CHECKS).problems
    assert any("not read back" in p for p in problems), problems


def test_an_expired_link_without_an_expired_record_is_named(tmp_path: Path) -> None:
    ledger, topics, _stored = _recorded(tmp_path)
    ledger.audio[0]["expires"] = True
    problems = check(ledger, _read_back(ledger, topics), RECORDING_CHECKS).problems
    assert any("expired but has no expired record (stored)" in p for p in problems), problems


def test_a_uri_the_store_cannot_read_is_unreadable_not_an_error() -> None:
    store = StoredObjects(RecordingSettings())
    assert store.digest("ftp://host/x").startswith("unreadable: no reader for ftp")
    assert store.digest("file:///nonexistent/x.mp3").startswith("unreadable: ")

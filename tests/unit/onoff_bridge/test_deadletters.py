"""The dead-letter tools' decisions, without a broker: since, replay ids, today's verdicts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ingress.routes import CDR_PATH, SMS_PATH, WebhookRoute
from ingress.webhooks import CALL_FIELDS, SMS_FIELDS
from onoff_bridge.deadletters import (
    DeadLetter,
    Judge,
    ReplayOutcome,
    Resubmission,
    Verdict,
    describe,
    parse_since,
    summary,
)
from schemas import RecordDecodeError
from schemas.settings import TopicNames

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOPICS = TopicNames()


class JsonEncoder:
    name = "json"

    def encode(self, record: Any) -> bytes:
        return orjson.dumps(record, default=str)

    def encode_body(self, record: Any) -> bytes:
        return self.encode(record)


class FakeDecoder:
    """Decodes JSON bytes as if they were a CallEvent; anything else is undecodable."""

    topic = TOPICS.cdr_raw

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            value: dict[str, Any] = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RecordDecodeError(f"{self.topic}: not a Confluent-framed Avro record") from None
        if value.get("callStarted"):
            value["callStarted"] = datetime.fromisoformat(value["callStarted"])
        return value


def judge(retention_days: float = 30) -> Judge:
    routes = (
        WebhookRoute(CDR_PATH, TOPICS.cdr_raw, JsonEncoder(), CALL_FIELDS),
        WebhookRoute(SMS_PATH, TOPICS.sms_raw, JsonEncoder(), SMS_FIELDS),
    )
    return Judge(routes, FakeDecoder(), TOPICS, timedelta(days=retention_days), NOW)


def letter(body: bytes, source: str = "ingress", path: str = CDR_PATH, **fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "partition": 0,
        "offset": 5,
        "timestamp_ms": 1,
        "request_id": "req-1",
        "received_at": NOW - timedelta(days=2),
        "source": source,
        "path": path,
        "reason": "externalNumber: expected a string, got number",
        "body": body,
        "api_key_name": "primary",
    }
    return DeadLetter(**(values | fields))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("36h", NOW - timedelta(hours=36)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
        ("2026-12-01T11:00:00+01:00", datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_a_date(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


def test_since_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="expected an age"):
        parse_since("yesterday", NOW)


def test_the_replay_id_comes_from_the_request_id_and_the_body_alone() -> None:
    one = letter(b'{"id": 1}')
    digest = hashlib.sha256(b'{"id": 1}').hexdigest()[:16]
    assert one.replay_id == f"req-1.replay-{digest}"
    assert letter(b'{"id": 1}', offset=99, timestamp_ms=7).replay_id == one.replay_id
    assert letter(b'{"id": 2}').replay_id != one.replay_id
    assert letter(b'{"id": 1}', request_id="req-2").replay_id != one.replay_id


def test_an_ingress_body_that_passes_today_becomes_the_record_the_ingress_would_write() -> None:
    body = orjson.dumps({"id": "c-1", "externalNumber": 33612345678})
    dead = letter(body)
    verdict = judge()(dead)
    assert isinstance(verdict, Resubmission)
    assert (verdict.topic, verdict.key) == (TOPICS.cdr_raw, "c-1")
    record = orjson.loads(verdict.value)
    assert record["externalNumber"] == "33612345678"
    assert record["ingest"]["requestId"] == dead.replay_id
    assert record["ingest"]["apiKeyName"] == "primary"
    assert record["ingest"]["receivedAt"] == dead.received_at.isoformat()


def test_an_ingress_body_that_still_fails_says_why_without_its_values() -> None:
    body = orjson.dumps({"id": "c-1", "callStarted": "+33612345678"})
    verdict = judge()(letter(body))
    assert isinstance(verdict, ReplayOutcome) and verdict.verdict is Verdict.STILL_FAILS
    assert verdict.detail.startswith("callStarted: not an ISO-8601 date-time")
    assert "33612345678" not in verdict.detail


def test_an_sms_goes_to_the_sms_topic_and_an_unknown_path_is_not_replayable() -> None:
    sms = orjson.dumps({"id": "s-1", "date": "2026-12-01T10:00:00Z", "body": "hi"})
    verdict = judge()(letter(sms, path=SMS_PATH))
    assert isinstance(verdict, Resubmission) and verdict.topic == TOPICS.sms_raw
    other = judge()(letter(sms, path="/v1/other"))
    assert isinstance(other, ReplayOutcome) and other.verdict is Verdict.NOT_REPLAYABLE


def test_a_dedupe_dead_letter_goes_back_unchanged_when_it_decodes_and_is_within_retention() -> None:
    recent = orjson.dumps({"id": "c-2", "callStarted": (NOW - timedelta(days=3)).isoformat()})
    dead = letter(recent, source="dedupe", path=TOPICS.cdr_raw)
    verdict = judge()(dead)
    assert isinstance(verdict, Resubmission)
    assert (verdict.topic, verdict.key, verdict.value) == (TOPICS.cdr_raw, "c-2", recent)
    # Past the retention today: it would be refused again, so it is not written.
    refused = judge(retention_days=1)(dead)
    assert isinstance(refused, ReplayOutcome) and refused.verdict is Verdict.STILL_FAILS
    assert refused.detail == "the call is past the dedupe retention (1 days)"
    garbage = judge()(letter(b"\x00garbage", source="dedupe", path=TOPICS.cdr_raw))
    assert isinstance(garbage, ReplayOutcome) and garbage.verdict is Verdict.STILL_FAILS


def test_a_record_of_onoff_calls_is_not_replayable() -> None:
    verdict = judge()(letter(b"\x00bad", source="metrics", path=TOPICS.calls))
    assert isinstance(verdict, ReplayOutcome) and verdict.verdict is Verdict.NOT_REPLAYABLE
    assert "changelog" in verdict.detail


def test_a_listed_line_holds_no_value_from_the_reason() -> None:
    dead = letter(b"x" * 2048, reason="date: not an ISO-8601 date-time: 'ada@example.com'")
    line = describe(dead)
    assert "ada@example.com" not in line and "example" not in line
    assert "2.0 KiB" in line and "req-1" in line and "key=primary" in line
    assert line.startswith("2026-12-01T12:00:00Z  ingress")


def test_the_summary_counts_each_verdict() -> None:
    dead = letter(b"{}")
    outcomes = [
        ReplayOutcome(dead, Verdict.MOVED, ""),
        ReplayOutcome(dead, Verdict.STILL_FAILS, ""),
        ReplayOutcome(dead, Verdict.STILL_FAILS, ""),
    ]
    assert summary(outcomes) == "1 moved, 2 still fails"
    assert summary([]) == "nothing to replay"

"""Turning a webhook body into a record: the sender's loose contract, made exact."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ingress.errors import PayloadRejectedError
from ingress.webhooks import (
    CALL_FIELDS,
    SMS_FIELDS,
    IngestMetadata,
    build_record,
    content_sha256,
    parse_json_object,
)
from schemas import SchemaName, load_schema
from tests.conftest import sample, sample_bytes

META = IngestMetadata(
    received_at=datetime(2026, 3, 2, 9, 21, 41, tzinfo=UTC),
    request_id="req-1",
    api_key_name="primary",
    path="/v1/onoff/cdr",
)
VALID_CALL_SAMPLES = [
    "cdr-answered-inbound.json",
    "cdr-answered-inbound-update.json",
    "cdr-missed-inbound.json",
    "recording.json",
    "voicemail.json",
    "test-payload-guess.json",
]


def call(body: dict[str, Any]) -> dict[str, Any]:
    return build_record(body, CALL_FIELDS, META).record


def rejection(body: dict[str, Any], fields: dict[str, Any] = CALL_FIELDS) -> str:
    with pytest.raises(PayloadRejectedError) as raised:
        build_record(body, fields, META)
    assert raised.value.reason == str(raised.value)
    return raised.value.reason


def problem_fields(reason: str) -> list[str]:
    return [problem.split(":", 1)[0] for problem in reason.split("; ")]


def avro_schema(name: SchemaName) -> Any:
    return fastavro.parse_schema(json.loads(load_schema(name)))


# --- parse_json_object ---------------------------------------------------------------------


def test_a_json_object_is_parsed() -> None:
    assert parse_json_object(sample_bytes("recording.json")) == sample("recording.json")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (sample_bytes("invalid-truncated.json.txt"), "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid JSON"),
        (b'{"id": "a",}', "body is not valid JSON"),
        (b"[]", "body is JSON list, not an object"),
        (b'"c-1"', "body is JSON str, not an object"),
        (b"42", "body is JSON int, not an object"),
        (b"null", "body is JSON NoneType, not an object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejectedError) as raised:
        parse_json_object(body)
    assert raised.value.reason.startswith(reason)


# --- the id --------------------------------------------------------------------------------


def test_a_numeric_id_becomes_a_string_key() -> None:
    parsed = build_record({"id": 12345}, CALL_FIELDS, META)
    assert parsed.key == "12345"
    assert parsed.record["id"] == "12345"


def test_a_string_id_is_kept_as_is() -> None:
    parsed = build_record({"id": " c-1 "}, CALL_FIELDS, META)
    assert (parsed.key, parsed.record["id"]) == (" c-1 ", " c-1 ")


@pytest.mark.parametrize("body", [{}, {"id": None}, {"eventName": "CDR", "id": None}])
def test_a_missing_or_null_id_is_rejected(body: dict[str, Any]) -> None:
    assert rejection(body) == "id: required"
    assert rejection(body, SMS_FIELDS) == "id: required"


@pytest.mark.parametrize(
    ("value", "json_type"),
    [("", "string"), (True, "boolean"), (1.5, "number"), ([1], "array"), ({"a": 1}, "object")],
)
def test_an_id_of_the_wrong_kind_is_rejected(value: Any, json_type: str) -> None:
    assert rejection({"id": value}) == (
        f"id: expected a non-empty string or number, got {json_type}"
    )


# --- null and missing ----------------------------------------------------------------------


def test_null_and_missing_fields_give_the_same_record() -> None:
    missing = {"id": "c-1", "eventName": "VM"}
    nulls = {**dict.fromkeys(CALL_FIELDS), "id": "c-1", "eventName": "VM", "notInSchema": None}
    assert call(missing) == call(nulls)
    assert all(call(missing)[field] is None for field in CALL_FIELDS if field != "eventName")


def test_every_schema_field_is_in_the_record() -> None:
    for name, fields in ((SchemaName.CALL_EVENT, CALL_FIELDS), (SchemaName.SMS_EVENT, SMS_FIELDS)):
        schema_fields = [f["name"] for f in json.loads(load_schema(name))["fields"]]
        record = build_record({"id": "x"}, fields, META).record
        assert sorted(record) == sorted(schema_fields)


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-02T09:15:04Z", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
        ("2026-03-02T09:15:04+00:00", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
        ("2026-03-02T11:15:04+02:00", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
        ("2026-03-01T23:45:04-09:30", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
        ("2026-03-02T09:15:04.250Z", datetime(2026, 3, 2, 9, 15, 4, 250000, tzinfo=UTC)),
        # No offset: the sender means UTC.
        ("2026-03-02T09:15:04", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
        ("2026-03-02 09:15:04", datetime(2026, 3, 2, 9, 15, 4, tzinfo=UTC)),
    ],
)
def test_timestamps_become_utc_datetimes(value: str, expected: datetime) -> None:
    record = build_record({"id": "s-1", "date": value}, SMS_FIELDS, META).record
    for parsed in (call({"id": "c-1", "callStarted": value})["callStarted"], record["date"]):
        assert parsed == expected
        assert parsed.tzinfo is UTC


def test_an_offset_is_converted_not_dropped() -> None:
    parsed = call({"id": "c-1", "callEnded": "2026-03-02T00:30:00+05:30"})["callEnded"]
    assert parsed.utcoffset() == timedelta(0)
    assert parsed == datetime(2026, 3, 1, 19, 0, tzinfo=UTC)
    assert parsed == datetime(2026, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("yesterday at noon", "callStarted: not an ISO-8601 date-time: 'yesterday at noon'"),
        ("2026-13-02T09:15:04Z", "callStarted: not an ISO-8601 date-time"),
        ("", "callStarted: not an ISO-8601 date-time"),
        (1709370904, "callStarted: expected an ISO-8601 date-time, got number"),
        (True, "callStarted: expected an ISO-8601 date-time, got boolean"),
        ({"at": "2026"}, "callStarted: expected an ISO-8601 date-time, got object"),
    ],
)
def test_a_bad_timestamp_is_rejected(value: Any, problem: str) -> None:
    assert rejection({"id": "c-1", "callStarted": value}).startswith(problem)


# --- the other types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(396, 396), (396.0, 396), ("396", 396), (" 48 ", 48), (0, 0)]
)
def test_integers_accept_their_unambiguous_spellings(value: Any, expected: int) -> None:
    record = call({"id": "c-1", "callDuration": value, "voicemailDuration": value})
    assert record["callDuration"] == record["voicemailDuration"] == expected
    assert type(record["callDuration"]) is int


@pytest.mark.parametrize(
    ("value", "got"),
    [("long", "string"), (1.5, "number"), (True, "boolean"), ([1], "array"), ("-3", "string")],
)
def test_a_non_integer_duration_is_rejected(value: Any, got: str) -> None:
    assert rejection({"id": "c-1", "callDuration": value}) == (
        f"callDuration: expected an integer, got {got}"
    )


def test_a_number_where_a_string_belongs_keeps_its_digits() -> None:
    record = call({"id": "c-1", "externalNumber": 15550199001, "onoffUserNumber": "+1555"})
    assert (record["externalNumber"], record["onoffUserNumber"]) == ("15550199001", "+1555")


@pytest.mark.parametrize(("value", "got"), [(True, "boolean"), (1.5, "number"), ({}, "object")])
def test_a_string_field_of_the_wrong_kind_is_rejected(value: Any, got: str) -> None:
    assert rejection({"id": "c-1", "callNotes": value}) == (
        f"callNotes: expected a string, got {got}"
    )


def test_unknown_enum_values_are_data_not_errors() -> None:
    record = call({"id": "c-1", "eventName": "FAX", "callStatus": "BUSY", "callDirection": "X"})
    assert (record["eventName"], record["callStatus"], record["callDirection"]) == (
        "FAX",
        "BUSY",
        "X",
    )


def test_tags_keep_their_three_fields_and_nothing_else() -> None:
    record = call(
        {
            "id": "c-1",
            "tags": [
                {"tagId": "t-1", "tagName": "Billing", "tagColor": "#32A8FF", "extra": 1},
                {"tagId": 7},
                {},
            ],
        }
    )
    assert record["tags"] == [
        {"tagId": "t-1", "tagName": "Billing", "tagColor": "#32A8FF"},
        {"tagId": "7", "tagName": None, "tagColor": None},
        {"tagId": None, "tagName": None, "tagColor": None},
    ]
    assert call({"id": "c-1", "tags": []})["tags"] == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Billing", "tags: expected an array of tags, got string"),
        ({"tagId": "t"}, "tags: expected an array of tags, got object"),
        ([{"tagId": "t"}, "Billing"], "tags: tag 1 is string, not an object"),
        ([{"tagName": ["a"]}], "tags: expected a string, got array"),
    ],
)
def test_malformed_tags_are_rejected(value: Any, problem: str) -> None:
    assert rejection({"id": "c-1", "tags": value}) == problem


# --- every problem named -------------------------------------------------------------------


def test_every_problem_is_named_in_the_reason() -> None:
    reason = rejection(sample("invalid-wrong-types.json"))
    assert problem_fields(reason) == ["callStarted", "callDuration", "tags"]
    assert "'yesterday at noon'" in reason


def test_a_missing_id_is_named_beside_the_other_problems() -> None:
    reason = rejection({"callDuration": "long", "date": 5, "body": []}, SMS_FIELDS)
    assert problem_fields(reason) == ["id", "date", "body"]


WRONG_VALUES: dict[str, Any] = {
    "eventName": {"a": 1},
    "onoffUserName": True,
    "externalEmail": [],
    "callStarted": "noon",
    "callEnded": 12,
    "callDuration": "long",
    "callNotes": 1.25,
    "voicemailDuration": [],
    "callRecordingUrl": False,
    "tags": "Billing",
}


@given(st.sets(st.sampled_from(sorted(WRONG_VALUES)), min_size=1), st.booleans())
def test_the_reason_names_exactly_the_wrong_fields(wrong: set[str], with_id: bool) -> None:
    body: dict[str, Any] = {"callDirection": "INBOUND", **{f: WRONG_VALUES[f] for f in wrong}}
    if with_id:
        body["id"] = "c-1"
    expected = ([] if with_id else ["id"]) + [f for f in CALL_FIELDS if f in wrong]
    assert problem_fields(rejection(body)) == expected


# --- unknown fields ------------------------------------------------------------------------


def test_unknown_fields_are_kept_sorted_with_nulls_dropped() -> None:
    record = call(
        {
            "zeta": 1,
            "id": "c-1",
            "alpha": {"y": [1, "two"], "x": None},
            "gone": None,
            "callNotes": "hi",
            "émoji": "☎",
        }
    )
    assert record["extraJson"] == '{"alpha":{"x":null,"y":[1,"two"]},"zeta":1,"émoji":"☎"}'
    assert json.loads(record["extraJson"]) == {
        "alpha": {"y": [1, "two"], "x": None},
        "zeta": 1,
        "émoji": "☎",
    }


def test_without_unknown_fields_extra_json_is_null() -> None:
    assert call({"id": "c-1", "callNotes": "hi", "other": None})["extraJson"] is None


def test_the_test_payload_keeps_its_future_field() -> None:
    record = call(sample("test-payload-guess.json"))
    assert record["extraJson"] == '{"extraFieldFromTheFuture":{"nested":true}}'
    assert record["id"] == "12345"


def test_sms_fields_are_unknown_to_a_call_and_call_fields_to_an_sms() -> None:
    sms = sample("sms-received.json")
    record = call(sms)
    assert json.loads(record["extraJson"]) == {
        "date": sms["date"],
        "smsDirection": "RECEIVED",
        "body": sms["body"],
    }


# --- ingest metadata and the schema --------------------------------------------------------


def test_ingest_metadata_is_attached() -> None:
    body = sample("recording.json")
    assert call(body)["ingest"] == {
        "receivedAt": META.received_at,
        "requestId": "req-1",
        "contentSha256": content_sha256(body),
        "apiKeyName": "primary",
        "path": "/v1/onoff/cdr",
    }


@pytest.mark.parametrize("name", VALID_CALL_SAMPLES)
def test_every_valid_call_sample_fits_the_call_event_schema(name: str) -> None:
    record = call(sample(name))
    out = io.BytesIO()
    schema = avro_schema(SchemaName.CALL_EVENT)
    fastavro.schemaless_writer(out, schema, record)
    out.seek(0)
    assert fastavro.schemaless_reader(out, schema, schema) == record


def test_the_sms_sample_fits_the_sms_event_schema() -> None:
    record = build_record(sample("sms-received.json"), SMS_FIELDS, META).record
    assert record["date"] == datetime(2026, 3, 2, 9, 25, 12, tzinfo=UTC)
    assert record["body"] == "Got the invoice, thanks!"
    fastavro.schemaless_writer(io.BytesIO(), avro_schema(SchemaName.SMS_EVENT), record)


# --- content_sha256 ------------------------------------------------------------------------


def reference_sha256(body: dict[str, Any]) -> str:
    """The schema's definition, written independently: sorted keys, no whitespace, no nulls."""

    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    canonical = json.dumps(drop(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("name", [*VALID_CALL_SAMPLES, "sms-received.json"])
def test_the_hash_is_sha256_of_canonical_json(name: str) -> None:
    body = sample(name)
    assert content_sha256(body) == reference_sha256(body)
    assert len(content_sha256(body)) == 64


def test_the_hash_ignores_key_order_whitespace_and_explicit_nulls() -> None:
    compact = b'{"id":"c-1","callDuration":5,"tags":[{"tagId":"t","tagName":"B"}]}'
    spaced = b"""{
        "tags": [ { "tagName": "B", "tagColor": null, "tagId": "t" } ],
        "callNotes": null,
        "callDuration": 5,   "id": "c-1"
    }"""
    assert content_sha256(parse_json_object(compact)) == content_sha256(parse_json_object(spaced))


@pytest.mark.parametrize(
    "changed",
    [
        {"id": "c-1", "callDuration": 6},
        {"id": "c-1", "callDuration": "5"},
        {"id": "c-1", "callDuration": 5, "callNotes": ""},
        {"id": "c-1", "callDuration": 5, "tags": []},
        {"id": "c-2", "callDuration": 5},
        {"id": "c-1"},
    ],
)
def test_the_hash_changes_when_a_value_changes(changed: dict[str, Any]) -> None:
    assert content_sha256(changed) != content_sha256({"id": "c-1", "callDuration": 5})


def test_the_update_of_a_call_hashes_differently_from_the_first_delivery() -> None:
    first = sample("cdr-answered-inbound.json")
    update = sample("cdr-answered-inbound-update.json")
    assert first["id"] == update["id"]
    assert content_sha256(first) != content_sha256(update)


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=8)


def reordered(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: reordered(value[k], data) for k in keys}
    if isinstance(value, list):
        return [reordered(v, data) for v in value]
    return value


@given(json_objects, st.data())
def test_the_hash_is_invariant_under_key_order(body: dict[str, Any], data: st.DataObject) -> None:
    shuffled = reordered(body, data)
    assert content_sha256(shuffled) == content_sha256(body) == reference_sha256(body)
    # And through the wire: any spacing, any order, parsed back.
    text = json.dumps(shuffled, indent=data.draw(st.sampled_from([None, 0, 2])))
    assert content_sha256(parse_json_object(text.encode())) == content_sha256(body)


@given(json_objects, st.lists(st.text(max_size=8), max_size=4))
def test_the_hash_is_invariant_under_added_nulls(body: dict[str, Any], keys: list[str]) -> None:
    padded = {**{k: None for k in keys if k not in body}, **body}
    assert content_sha256(padded) == content_sha256(body)


@given(json_objects, st.text(max_size=8), json_scalars.filter(lambda v: v is not None))
def test_the_hash_changes_when_a_field_is_set_to_a_new_value(
    body: dict[str, Any], key: str, value: Any
) -> None:
    assume(not (body.get(key) == value and type(body.get(key)) is type(value)))
    changed = {**body, key: value}
    assert content_sha256(changed) != content_sha256(body)


def _nested(depth: int, leaf: Any = None) -> bytes:
    """JSON nested `depth` levels, built as text: json.dumps itself recurses too deep."""
    opening = "".join('{"k":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return f"{opening}{json.dumps(leaf)}{closing}".encode()


_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()


@given(
    depth=st.integers(min_value=0, max_value=1000),
    width=st.integers(min_value=0, max_value=50),
    leaf=_JSON_LEAVES,
)
def test_any_deep_or_wide_json_object_is_stored_or_rejected_never_raises_otherwise(
    depth: int, width: int, leaf: Any
) -> None:
    wide = json.dumps({"id": "call-1", **{f"x{i}": leaf for i in range(width)}}).encode()
    raw = wide[:-1] + b', "deep": ' + _nested(depth, leaf) + b"}"
    meta = IngestMetadata(datetime.now(UTC), "req", None, "/v1/onoff/cdr")
    try:
        parsed = build_record(parse_json_object(raw), CALL_FIELDS, meta)
    except PayloadRejectedError as exc:
        assert exc.reason
    else:
        fastavro.schemaless_writer(io.BytesIO(), avro_schema(SchemaName.CALL_EVENT), parsed.record)


@pytest.mark.parametrize("depth", [300, 1000])
def test_an_unknown_field_nested_hundreds_of_levels_deep_is_rejected_with_a_reason(
    depth: int,
) -> None:
    raw = b'{"id": "call-1", "deep": ' + _nested(depth) + b"}"
    meta = IngestMetadata(datetime.now(UTC), "req", None, "/v1/onoff/cdr")
    with pytest.raises(PayloadRejectedError, match="cannot be stored as JSON"):
        build_record(parse_json_object(raw), CALL_FIELDS, meta)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1e300, "99999999999999999999"])
def test_an_integer_beyond_avro_long_is_rejected_with_a_reason(value: Any) -> None:
    meta = IngestMetadata(datetime.now(UTC), "req", None, "/v1/onoff/cdr")
    with pytest.raises(PayloadRejectedError, match="callDuration: integer out of the 64-bit"):
        build_record({"id": "call-1", "callDuration": value}, CALL_FIELDS, meta)

"""The one-pass decoder gives `build_record`'s record, or steps aside: never another answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.errors import PayloadRejectedError
from ingress.webhooks import (
    CALL_FIELDS,
    SMS_FIELDS,
    BodyDecoder,
    IngestMetadata,
    ParsedDelivery,
    Parser,
    build_record,
    parse_json_object,
)
from tests.conftest import SAMPLES

META = IngestMetadata(datetime(2026, 3, 2, 9, 21, 41, tzinfo=UTC), "req-1", "primary", "/v1/x")
CALL = BodyDecoder(CALL_FIELDS)
SMS = BodyDecoder(SMS_FIELDS)


def slow(raw: bytes, fields: dict[str, Parser]) -> ParsedDelivery | str:
    """What the ingress answered before the decoder: a record, or the reason it quarantines."""
    try:
        return build_record(parse_json_object(raw), fields, META)
    except PayloadRejectedError as exc:
        return exc.reason


def assert_same_or_stepped_aside(raw: bytes, fields: dict[str, Parser]) -> ParsedDelivery | None:
    decoder = CALL if fields is CALL_FIELDS else SMS
    fast = decoder.decode(raw, META)
    if fast is not None:
        assert fast == slow(raw, fields), raw
    return fast


@pytest.mark.parametrize("path", sorted(SAMPLES.iterdir()), ids=lambda p: p.name)
@pytest.mark.parametrize("fields", [CALL_FIELDS, SMS_FIELDS], ids=["call", "sms"])
def test_every_sample_gets_the_record_build_record_makes(path: Any, fields: Any) -> None:
    assert_same_or_stepped_aside(path.read_bytes(), fields)


@pytest.mark.parametrize(
    "name",
    ["cdr-answered-inbound.json", "cdr-answered-inbound-update.json", "recording.json"],
)
def test_a_body_of_known_fields_takes_the_one_pass_way(name: str) -> None:
    raw = (SAMPLES / name).read_bytes()
    assert assert_same_or_stepped_aside(raw, CALL_FIELDS) is not None


def test_what_it_leaves_to_build_record() -> None:
    left: list[dict[str, Any]] = [
        {"id": "c-1", "notInTheSchema": 1},  # kept in extraJson by build_record
        {"id": "c-1", "notInTheSchema": None},
        {"id": ""},
        {"id": True},
        {"callNotes": "no id"},
        {"id": "c-1", "callDuration": 396.0},  # a float: kept as such in the hash
        {"id": "c-1", "callDuration": "long"},  # a broken rule: build_record names it
        {"id": "c-1", "externalNumber": 2**64},  # orjson reads a float
        {"id": "c-1", "tags": [{"tagId": "t", "tagColor": None}]},
    ]
    for body in left:
        raw = orjson.dumps(body) if "externalNumber" not in body else json.dumps(body).encode()
        assert CALL.decode(raw, META) is None, body
    assert CALL.decode(b"[1]", META) is None
    assert CALL.decode(b'{"id": "c-1",', META) is None


def test_a_field_list_with_a_parser_it_does_not_know_gets_no_decoder() -> None:
    assert BodyDecoder.for_fields(CALL_FIELDS) is not None
    assert BodyDecoder.for_fields(CALL_FIELDS | {"externalNumber": lambda v: v}) is None


# --- generated bodies -----------------------------------------------------------------------

KNOWN = sorted(set(CALL_FIELDS) | set(SMS_FIELDS))
timestamps = st.sampled_from(
    ["2026-03-02T09:15:04Z", "2026-03-02t09:15:04z", "2026-03-02 09:15:04", "2026-03-02",
     "2026-03-02T11:15:04+02:00", "0001-01-01T00:30:00+01:00", "yesterday", ""]
)  # fmt: skip
integers = st.integers(-(2**65), 2**65) | st.sampled_from([0, -0, 2**63 - 1, 2**63, -(2**63)])
digit_strings = st.sampled_from(["396", " 48 ", "-3", "99999999999999999999", "1e3"])
scalars = (
    st.none()
    | st.booleans()
    | integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | timestamps
    | digit_strings
)
tags = st.lists(
    st.dictionaries(st.sampled_from(["tagId", "tagName", "tagColor", "extra"]), scalars, max_size=4)
    | scalars,
    max_size=3,
)
values = scalars | tags | st.dictionaries(st.text(max_size=4), scalars, max_size=3)
keys = st.sampled_from([*KNOWN, "id", "id", "unknown", "Id"])
bodies = st.dictionaries(keys, values, max_size=12)


def raw_json(body: dict[str, Any], data: st.DataObject, repeat: bool = True) -> bytes:
    """The body as the sender might write it: any spacing, sometimes a key twice."""
    text = json.dumps(body, indent=data.draw(st.sampled_from([None, 1])), ensure_ascii=False)
    if repeat and len(body) > 0 and data.draw(st.booleans()):  # a repeated key: the last counts
        key = data.draw(st.sampled_from(sorted(body)))
        text = text[:-1].rstrip() + f", {json.dumps(key)}: {json.dumps(data.draw(values))}}}"
    return text.encode()


@settings(max_examples=500)
@given(bodies, st.data())
def test_any_body_gets_the_record_build_record_makes_or_is_left_to_it(
    body: dict[str, Any], data: st.DataObject
) -> None:
    raw = raw_json(body, data)
    assert_same_or_stepped_aside(raw, CALL_FIELDS)
    assert_same_or_stepped_aside(raw, SMS_FIELDS)


strings = st.text(max_size=20) | st.integers(-(2**63), 2**63 - 1)
good_tags = st.lists(
    st.fixed_dictionaries({}, optional=dict.fromkeys(["tagId", "tagName", "tagColor"], strings)),
    max_size=3,
)
good_calls = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20) | st.integers(0, 2**63 - 1)},
    optional={
        **{f: strings | st.none() for f, p in CALL_FIELDS.items() if p is CALL_FIELDS["callNotes"]},
        "callStarted": st.sampled_from(["2026-03-02T09:15:04Z", "2026-03-02T11:15:04.250+02:00"]),
        "callEnded": st.none() | st.just("2026-03-02T09:21:40Z"),
        "callDuration": st.integers(0, 2**63 - 1) | st.just("396") | st.none(),
        "voicemailDuration": st.integers(0, 10_000),
        "tags": good_tags | st.none(),
    },
)


@settings(max_examples=300)
@given(good_calls, st.data())
def test_a_well_typed_call_of_known_fields_takes_the_one_pass_way(
    body: dict[str, Any], data: st.DataObject
) -> None:
    raw = raw_json(body, data, repeat=False)
    assert assert_same_or_stepped_aside(raw, CALL_FIELDS) is not None

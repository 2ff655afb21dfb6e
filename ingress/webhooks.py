"""Turns a webhook body into a CallEvent or SmsEvent record, following the sender's contract.

Onoff documents its fields loosely (`onoff-webhook.md`): only `id` is required;
`null` and missing mean the same; values outside the documented sets are data,
not errors; new fields may appear at any time. So this module is strict only
about types it must convert (timestamps, integers, tags) and keeps every field
it does not know in `extraJson`.

Two ways lead to the same record. `build_record` takes any parsed JSON object
and names every problem. `BodyDecoder` is the fast way for the common body, one
that holds only fields the route knows with values of the expected JSON types:
msgspec decodes and type-checks it in one pass, straight from the bytes, and
the canonical JSON for the hash is encoded from the same object. For any other
body (a field it does not know, a value of another type, a rule broken) it
answers None and the caller takes `build_record`, which gives the reason; for
every body it accepts, the record is the one `build_record` makes
(`tests/unit/ingress/test_body_decoder.py` checks both over generated bodies).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import msgspec
import orjson

from ingress.errors import PayloadRejectedError

Parser = Callable[[Any], Any]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


# Named tuples rather than frozen dataclasses: made for every request, and a frozen
# dataclass's __init__ costs twice as much.
class IngestMetadata(NamedTuple):
    received_at: datetime
    request_id: str
    api_key_name: str | None
    path: str


class ParsedDelivery(NamedTuple):
    key: str
    record: dict[str, Any]


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadRejectedError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PayloadRejectedError(f"body is JSON {type(value).__name__}, not an object")
    return value


def content_sha256(body: Mapping[str, Any]) -> str:
    """Hash of the body as canonical JSON: sorted keys, no whitespace, nulls dropped.

    Two deliveries that differ only in key order, spacing or explicit nulls
    hash the same, which is what the dedupe processor compares.
    """
    canonical = orjson.dumps(_drop_nulls(body), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    # A number where a string belongs (a phone number, say) keeps its digits.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {_json_type(value)}")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"expected an integer, got {_json_type(value)}")
    # Avro's long is 64 bits; fastavro would write a larger one and no reader could take it.
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise ValueError("integer out of the 64-bit range")
    return number


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 date-time, got {_json_type(value)}")
    try:
        # RFC 3339 allows a lowercase t and z; Python 3.11's parser does not.
        parsed = datetime.fromisoformat(value.upper())
        # The sender writes UTC with a Z; a time without an offset is taken as UTC too.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise ValueError(f"not an ISO-8601 date-time: {value[:40]!r}") from None
    except OverflowError:  # e.g. year 1 at +01:00 has no UTC equivalent
        raise ValueError(f"date-time out of range: {value[:40]!r}") from None


def _tags(value: Any) -> list[dict[str, str | None]]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of tags, got {_json_type(value)}")
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, dict):
            raise ValueError(f"tag {index} is {_json_type(tag)}, not an object")
        tags.append(
            {
                field: None if tag.get(field) is None else _string(tag[field])
                for field in ("tagId", "tagName", "tagColor")
            }
        )
    return tags


def _json_type(value: Any) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


_PARTY_FIELDS: dict[str, Parser] = {
    "eventName": _string,
    "onoffUserName": _string,
    "onoffUserEmail": _string,
    "onoffUserNumber": _string,
    "externalNumber": _string,
    "externalName": _string,
    "externalEmail": _string,
}

CALL_FIELDS: dict[str, Parser] = {
    **_PARTY_FIELDS,
    "callStarted": _timestamp,
    "callEnded": _timestamp,
    "callDuration": _integer,
    "callDirection": _string,
    "callStatus": _string,
    "callNotes": _string,
    "voicemailUrl": _string,
    "voicemailDuration": _integer,
    "callRecordingUrl": _string,
    "tags": _tags,
}

SMS_FIELDS: dict[str, Parser] = {
    **_PARTY_FIELDS,
    "date": _timestamp,
    "smsDirection": _string,
    "body": _string,
}


def build_record(
    body: Mapping[str, Any], fields: Mapping[str, Parser], meta: IngestMetadata
) -> ParsedDelivery:
    """Validates a parsed body against `fields`; every problem is named in one reason."""
    problems = []
    key = body.get("id")
    if key is None:
        problems.append("id: required")
    elif isinstance(key, bool) or not isinstance(key, str | int) or key == "":
        problems.append(f"id: expected a non-empty string or number, got {_json_type(key)}")
    record: dict[str, Any] = {"id": str(key)}
    for field, parse in fields.items():
        value = body.get(field)
        if value is None:
            record[field] = None
            continue
        try:
            record[field] = parse(value)
        except ValueError as exc:
            problems.append(f"{field}: {exc}")
    if problems:
        raise PayloadRejectedError("; ".join(problems))
    unknown = {k: v for k, v in body.items() if k != "id" and k not in fields and v is not None}
    try:
        extra = orjson.dumps(unknown, option=orjson.OPT_SORT_KEYS).decode() if unknown else None
        sha256 = content_sha256(body)
    except (orjson.JSONEncodeError, RecursionError) as exc:
        # orjson parses 1,024 levels but writes only 255: a body between the two is
        # well-formed yet cannot be kept as extraJson, which is a property of the body.
        raise PayloadRejectedError(f"body cannot be stored as JSON: {exc}") from exc
    record["extraJson"] = extra
    record["ingest"] = {
        "receivedAt": meta.received_at,
        "requestId": meta.request_id,
        "contentSha256": sha256,
        "apiKeyName": meta.api_key_name,
        "path": meta.path,
    }
    return ParsedDelivery(key=record["id"], record=record)


# An integer orjson reads as an integer too: beyond 64 bits it gives a float, which the
# parsers refuse where a string or an integer belongs. (orjson's unsigned 2**63 to
# 2**64 - 1 are left to `build_record`: msgspec bounds stop at 64 signed bits.)
_WireInt = Annotated[int, msgspec.Meta(ge=_LONG_MIN, le=_LONG_MAX)]
# The JSON types each parser takes and gives the same answer for as `build_record`.
# A tag with a null field is left to `build_record`: the hash drops nulls inside tags.
_WIRE_TYPES: dict[Parser, Any] = {
    _string: str | _WireInt | None,
    _integer: _WireInt | str | None,
    _timestamp: str | None,
    _tags: list[dict[str, str | _WireInt]] | None,
}


class BodyDecoder:
    """Decodes, validates and hashes a body of known fields in one pass (see the module doc)."""

    def __init__(self, fields: Mapping[str, Parser]) -> None:
        self._fields = tuple(fields.items())
        wire = msgspec.defstruct(
            "WireBody",
            [("id", str | _WireInt), *((name, _WIRE_TYPES[p], None) for name, p in self._fields)],
            forbid_unknown_fields=True,
            # Encoded without its null fields, sorted: the canonical JSON of `content_sha256`.
            omit_defaults=True,
        )
        self._decoder = msgspec.json.Decoder(wire)
        self._canonical = msgspec.json.Encoder(order="sorted")

    @classmethod
    def for_fields(cls, fields: Mapping[str, Parser]) -> BodyDecoder | None:
        """A decoder when every parser in `fields` is one this module knows, else None."""
        if not all(parse in _WIRE_TYPES for parse in fields.values()):
            return None
        return cls(fields)

    def decode(self, body: bytes, meta: IngestMetadata) -> ParsedDelivery | None:
        """The record `build_record` would make of `body`, or None: ask `build_record`."""
        try:
            wire = self._decoder.decode(body)
        except msgspec.MsgspecError:  # not JSON, a field it does not know, another type
            return None
        key = getattr(wire, "id")  # noqa: B009  (a struct made at run time: mypy sees no field)
        if key == "":
            return None
        record: dict[str, Any] = {"id": str(key)}
        try:
            for field, parse in self._fields:
                value = getattr(wire, field)
                record[field] = None if value is None else parse(value)
        except ValueError:
            return None
        record["extraJson"] = None
        record["ingest"] = {
            "receivedAt": meta.received_at,
            "requestId": meta.request_id,
            "contentSha256": hashlib.sha256(self._canonical.encode(wire)).hexdigest(),
            "apiKeyName": meta.api_key_name,
            "path": meta.path,
        }
        return ParsedDelivery(key=record["id"], record=record)

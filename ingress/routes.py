"""The webhook routes and what each does with a body: parse, validate, encode.

`WebhookRoute.accept` is the ingress's whole verdict on a body. The app calls
it for every request, and `onoff-bridge deadletter replay` calls the same
method on quarantined bodies, so a replay is judged exactly as a new request
would be today.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ingress.errors import PayloadRejectedError
from ingress.forwarder import AVRO
from ingress.webhooks import (
    BodyDecoder,
    IngestMetadata,
    Parser,
    build_record,
    parse_json_object,
)
from schemas import RecordEncodeError

log = logging.getLogger(__name__)

CDR_PATH = "/v1/onoff/cdr"
SMS_PATH = "/v1/onoff/sms"


class Encoder(Protocol):
    @property
    def name(self) -> str:
        """The schema's name: the spool's value format for a body that waits for its id."""

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def encode_body(self, record: Mapping[str, Any]) -> bytes: ...


class AcceptedDelivery(NamedTuple):
    """A body that passed: the Kafka key and the encoded value for the route's topic."""

    key: str
    value: bytes
    record: dict[str, Any]
    # AVRO for a framed Confluent record, else the schema name of an unframed body.
    value_format: str = AVRO


@dataclass(frozen=True)
class WebhookRoute:
    path: str
    topic: str
    encoder: Encoder
    fields: Mapping[str, Parser]
    # The one-pass way for a body of known fields; None when `fields` has a parser it
    # does not know, and every body then takes `build_record`.
    decoder: BodyDecoder | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", BodyDecoder.for_fields(self.fields))

    def accept(self, body: bytes, meta: IngestMetadata, *, framed: bool = True) -> AcceptedDelivery:
        """The record `body` becomes, or `PayloadRejectedError` with the reason to quarantine.

        `framed=False` encodes the Avro body without the registry's schema id, which
        needs no registry; the spool frames it once the id is known.

        Any other `SchemaError` (the registry did not answer) is not the body's
        fault and propagates: the caller must not quarantine it.
        """
        try:
            parsed = self.decoder.decode(body, meta) if self.decoder is not None else None
            if parsed is None:
                parsed = build_record(parse_json_object(body), self.fields, meta)
        except PayloadRejectedError:
            raise
        except Exception as exc:  # parsing is pure: whatever it raises, the body caused
            log.warning(
                "body broke the parser", extra={"route": self.path, "error": type(exc).__name__}
            )
            raise PayloadRejectedError(f"body cannot be converted: {type(exc).__name__}") from exc
        try:
            if framed:
                return AcceptedDelivery(
                    parsed.key, self.encoder.encode(parsed.record), parsed.record
                )
            body_only = self.encoder.encode_body(parsed.record)
        except RecordEncodeError as exc:
            raise PayloadRejectedError(str(exc)) from exc
        return AcceptedDelivery(parsed.key, body_only, parsed.record, self.encoder.name)

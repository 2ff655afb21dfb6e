"""Faust codecs over `schemas`, so tables and topics speak the same Avro as the ingress."""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers import codecs
from faust.types import AppT, Message

from schemas import AvroCodec


class AvroFaustCodec(codecs.Codec):
    """Confluent-framed Avro through the Schema Registry."""

    def __init__(self, codec: AvroCodec) -> None:
        super().__init__()
        self._codec = codec

    def _dumps(self, obj: Any) -> bytes:
        return self._codec.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self._codec.decode(s)


class Utf8Codec(codecs.Codec):
    """Keys as UTF-8 text: what the ingress writes, and str in Python."""

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


UTF8 = "onoff-utf8"


class RawBytes(faust.Schema):  # type: ignore[type-arg]
    """A source topic's keys and values as the bytes Kafka holds: what the "raw" serializer
    gives, without the serializer registry's two lookups per record (about 4 % of the
    dedupe worker's main thread). The agents decode the values themselves, in batches."""

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def loads_key(self, app: AppT, message: Message, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: AppT, message: Message, **_: Any) -> Any:
        return message.value


def register_avro(name: str, codec: AvroCodec) -> str:
    """Registers (or replaces) a codec under `name`; returns the name to pass to Faust."""
    codecs.register(name, AvroFaustCodec(codec))
    return name


codecs.register(UTF8, Utf8Codec())

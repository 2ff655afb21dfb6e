"""Faust codecs over `schemas`, so tables and topics speak the same Avro as the ingress."""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

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


def register_avro(name: str, codec: AvroCodec) -> str:
    """Registers (or replaces) a codec under `name`; returns the name to pass to Faust."""
    codecs.register(name, AvroFaustCodec(codec))
    return name


codecs.register(UTF8, Utf8Codec())

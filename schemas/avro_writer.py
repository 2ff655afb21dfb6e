"""A writer for one Avro schema, generated once from it: fastavro's bytes at a fraction of the cost.

`fastavro.schemaless_writer` interprets the schema for every record, and for
each union it validates the value against every branch to pick one. A
CallEvent has twenty nullable fields: writing one took 70 to 100 µs on this
project's (shared, loaded) machine, the largest single cost of an ingress
request; the generated writer takes 13 to 19 µs there. `compile_writer` turns the schema
into the straight-line Python function that a person would write for it
(`if v is None: null, else: index 1 and the string`), once, at start-up.

It covers what the project's schemas use: records, `null`, `boolean`, `int`,
`long`, `float`, `double`, `string`, `bytes`, arrays, maps, unions of `null`
and one other type, and `timestamp-millis`. Anything else raises
`UnsupportedSchemaError`, and the codec keeps fastavro for that schema. The
bytes are fastavro's for every record fastavro accepts
(`tests/unit/schemas/test_avro_writer.py` compares them over generated
records); a value of the wrong type raises, like fastavro, though the
exceptions differ (the codec turns either into `RecordEncodeError`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.avro_codegen import PRIMITIVES as _PRIMITIVES
from schemas.avro_codegen import CodeGenerator, UnsupportedSchemaError

__all__ = ["UnsupportedSchemaError", "Writer", "compile_writer", "encode_double", "encode_long"]

Writer = Callable[[Mapping[str, Any]], bytes]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = object()


def encode_long(n: int) -> bytes:
    """Zig-zag varint of a 64-bit signed integer (Avro's `int` and `long`)."""
    if n < _LONG_MIN or n > _LONG_MAX:
        raise ValueError("an integer out of Avro's long range")
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int(n: int) -> bytes:
    if n < _INT_MIN or n > _INT_MAX:
        raise ValueError("an integer out of Avro's int range")
    return encode_long(n)


def _integer(value: Any) -> int:
    """An `int`/`long` value as fastavro takes it: an integer, never a boolean."""
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _lenient_integer(value: Any) -> int:
    """An `int`/`long` value outside a union, as fastavro's C conversion takes it: a boolean
    is 0 or 1 and a float is truncated; a string is refused."""
    if type(value) is int:
        return value
    if isinstance(value, int | float):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _real(value: Any) -> Any:
    """A `float`/`double` value in a union: a number, not a boolean (fastavro's validation)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _millis(value: Any, integer: Callable[[Any], int] = _integer) -> int:
    """`timestamp-millis`: an aware datetime (or already an integer), as fastavro converts it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # local time, as fastavro reads it (the project writes UTC)
            return int(time.mktime(value.timetuple())) * 1000 + value.microsecond // 1000
        delta = value - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return integer(value)


def _binary(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _sequence(value: Any) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a map, got {type(value).__name__}")
    return value


_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
encode_double = _DOUBLE.pack  # Avro's `double`: 8 bytes, little-endian IEEE 754

# What the generated code may call, by the names it uses.
_HELPERS: dict[str, Any] = {
    "_long": encode_long,
    "_int": _int,
    "_integer": _integer,
    "_lenient_integer": _lenient_integer,
    "_real": _real,
    "_millis": _millis,
    "_binary": _binary,
    "_sequence": _sequence,
    "_mapping": _mapping,
    "_float": _FLOAT.pack,
    "_double": _DOUBLE.pack,
    "_MISSING": _MISSING,
}


def compile_writer(schema: Any) -> Writer:
    """The function that writes a record of `schema` (parsed JSON) as fastavro's schemaless_writer.

    Raises `UnsupportedSchemaError` for a schema it cannot generate a writer for.
    """
    generator = _Generator()
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnsupportedSchemaError("the top-level schema must be a record")
    generator.line("def write(datum):")
    generator.indent += 1
    generator.line("out = bytearray()")
    generator.record(schema, "datum", namespace=None)
    generator.line("return bytes(out)")
    namespace = dict(_HELPERS) | generator.constants
    exec(compile(generator.source(), "<avro writer>", "exec"), namespace)  # noqa: S102
    write: Writer = namespace["write"]
    write.source = generator.source()  # type: ignore[attr-defined]  # for a reader debugging it
    return write


class _Generator(CodeGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.constants: dict[str, Any] = {}

    def constant(self, value: Any) -> str:
        name = self.variable("_default")
        self.constants[name] = value
        return name

    # -- types -------------------------------------------------------------------------

    def value(self, schema: Any, var: str, namespace: str | None, strict: bool = False) -> None:
        """Code that appends `var`, of type `schema`, to `out`.

        `strict`: `var` is (inside) a union's value. fastavro picks a union's branch by
        validating the whole value strictly (an integer, not a boolean; a number, not a
        string), but writes other values through C conversions that take booleans for
        integers and truncate floats. The generated code does as it does in each place.
        """
        if isinstance(schema, list):
            self.union(schema, var, namespace)
            return
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                self.primitive(schema, var, strict)
                return
            self.value(self.resolve(schema, namespace), var, namespace, strict)
            return
        if not isinstance(schema, dict):
            raise UnsupportedSchemaError(f"not a schema: {schema!r}")
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if kind == "long" and logical == "timestamp-millis":
            convert = "_integer" if strict else "_lenient_integer"
            self.integer("long", f"_millis({var}, {convert})")
        elif logical is not None:
            raise UnsupportedSchemaError(f"logical type {logical!r}")
        elif kind in _PRIMITIVES:
            self.primitive(kind, var, strict)
        elif kind == "record":
            self.record(schema, var, namespace, strict)
        elif kind == "array":
            self.array(schema, var, namespace, strict)
        elif kind == "map":
            self.map(schema, var, namespace, strict)
        else:
            raise UnsupportedSchemaError(f"type {kind!r}")

    def primitive(self, kind: str, var: str, strict: bool = False) -> None:
        if kind == "null":
            self.line(f"if {var} is not None:")
            self.line(f"    raise TypeError('expected null, got ' + type({var}).__name__)")
        elif kind == "boolean":
            if strict:
                self.line(f"if {var} is True: out.append(1)")
                self.line(f"elif {var} is False: out.append(0)")
                self.line(
                    f"else: raise TypeError('expected a boolean, got ' + type({var}).__name__)"
                )
            else:  # fastavro: the value's truth
                self.line(f"out.append(1 if {var} else 0)")
        elif kind in ("int", "long"):
            convert = "_integer" if strict else "_lenient_integer"
            self.integer(kind, f"{var} if type({var}) is int else {convert}({var})")
        elif kind in ("float", "double"):
            # fastavro: any real number in a union, and what float() takes elsewhere.
            self.line(f"out += _{kind}(float({'_real(' + var + ')' if strict else var}))")
        else:  # string, bytes: a length, then the bytes
            data = self.variable("b")
            # Only a str (or a subclass) has `encode`: an int, bytes or None raise here.
            self.line(
                f"{data} = {var}.encode()" if kind == "string" else f"{data} = _binary({var})"
            )
            self.length(f"len({data})")
            self.line(f"out += {data}")

    def integer(self, kind: str, expression: str) -> None:
        """An `int` or `long` already converted; within [-64, 64) its zig-zag varint is
        one byte, appended inline (counts, flags and small sums nearly always are)."""
        number = self.variable("i")
        self.line(f"{number} = {expression}")
        self.line(f"if -64 <= {number} < 64: out.append(({number} << 1) ^ ({number} >> 63))")
        self.line(f"else: out += _{kind}({number})")

    def length(self, expression: str) -> None:
        """A non-negative count; below 64 its zig-zag varint is the one byte 2n."""
        count = self.variable("n")
        self.line(f"{count} = {expression}")
        self.line(f"if {count} < 64: out.append({count} << 1)")
        self.line(f"else: out += _long({count})")

    def union(self, branches: list[Any], var: str, namespace: str | None) -> None:
        null_index = self.null_branch(branches)
        other = branches[1 - null_index]
        self.line(f"if {var} is None:")
        self.line(f"    out.append({null_index << 1})")
        self.line("else:")
        self.indent += 1
        self.line(f"out.append({(1 - null_index) << 1})")
        self.value(other, var, namespace, strict=True)
        self.indent -= 1

    def record(
        self, schema: dict[str, Any], var: str, namespace: str | None, strict: bool = False
    ) -> None:
        name = self.define(schema, namespace)
        if name in self.expanding:
            raise UnsupportedSchemaError(f"recursive record {name}")
        self.expanding.add(name)
        inner = name.rpartition(".")[0] or None
        # `get` below is the check that it is a mapping, as in fastavro.
        if not schema.get("fields"):
            self.line("pass  # a record without fields takes no bytes")
        for field in schema.get("fields", []):
            field_var = self.variable("v")
            key = repr(field["name"])
            field_type = field["type"]
            if field.get("default", 0) is None:
                self.line(f"{field_var} = {var}.get({key})")
            elif "default" in field:
                # fastavro writes a missing field's default, as it is in the schema.
                self.line(f"{field_var} = {var}.get({key}, {self.constant(field['default'])})")
            elif _may_be_null(field_type):
                self.line(f"{field_var} = {var}.get({key})")
            else:
                self.line(f"{field_var} = {var}.get({key}, _MISSING)")
                self.line(f"if {field_var} is _MISSING:")
                self.line(f"    raise ValueError('no value and no default for ' + {key})")
            self.value(field_type, field_var, inner, strict)
        self.expanding.discard(name)

    def array(
        self, schema: dict[str, Any], var: str, namespace: str | None, strict: bool = False
    ) -> None:
        items = self.variable("items")
        item = self.variable("item")
        self.line(f"{items} = _sequence({var})")
        self.line(f"if {items}:")
        self.indent += 1
        self.length(f"len({items})")
        self.line(f"for {item} in {items}:")
        self.indent += 1
        self.value(schema["items"], item, namespace, strict)
        self.indent -= 2
        self.line("out.append(0)")

    def map(
        self, schema: dict[str, Any], var: str, namespace: str | None, strict: bool = False
    ) -> None:
        entries = self.variable("entries")
        key, value = self.variable("k"), self.variable("x")
        self.line(f"{entries} = _mapping({var})")
        self.line(f"if {entries}:")
        self.indent += 1
        self.length(f"len({entries})")
        self.line(f"for {key}, {value} in {entries}.items():")
        self.indent += 1
        self.primitive("string", key)
        self.value(schema["values"], value, namespace, strict)
        self.indent -= 2
        self.line("out.append(0)")


def _may_be_null(schema: Any) -> bool:
    """fastavro writes None for a missing field whose type is a union with null."""
    return schema == "null" or (isinstance(schema, list) and "null" in schema)

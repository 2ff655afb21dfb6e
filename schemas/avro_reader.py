"""A reader for one Avro schema, generated once from it: what fastavro reads, in less time.

`fastavro.schemaless_reader` interprets the schema for every record: a CallEvent
(twenty nullable fields, two timestamps) took about 16 µs to read on this
project's machine, the largest single cost of the dedupe worker's event after
Faust's own (py-spy, 2026-12-03). `compile_reader` turns the schema into the
straight-line Python function a person would write for it, once, the twin of
`schemas.avro_writer`: each field read into a local, a varint of one byte
decoded inline, each record built as one dict display.

It covers what `compile_writer` covers (records, `null`, `boolean`, `int`,
`long`, `float`, `double`, `string`, `bytes`, arrays, maps, unions of `null` and
one other type, `timestamp-millis`) and raises `UnsupportedSchemaError` for the
rest; the codec keeps fastavro then, and always when the writer's schema differs
from the reader's (schema resolution is fastavro's). It returns what fastavro
returns for every record fastavro writes (`tests/unit/schemas/test_avro_reader.py`
compares them over generated schemas and records); a truncated or corrupt body
raises (IndexError, ValueError, EOFError, struct.error, UnicodeDecodeError), as
fastavro raises, and the codec turns either into `RecordDecodeError`.

`fields` projects the record onto some of its top-level fields: the others are
still walked over (Avro has no offsets to jump by), their lengths checked
against the body's, but their strings are not decoded (nor their UTF-8
checked), their timestamps not converted and their arrays and records not
built. The metrics worker reads 11 of a `Call`'s 24 fields this way (a Call of
the benchmark: 10.2 -> 7.3 µs); its delivery hashes, notes and tags stay bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.avro_codegen import PRIMITIVES as _PRIMITIVES
from schemas.avro_codegen import CodeGenerator, UnsupportedSchemaError

__all__ = ["Reader", "UnsupportedSchemaError", "compile_reader"]

# data, the offset of the body in it -> the record.
Reader = Callable[[bytes, int], dict[str, Any]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at `pos` (any length up to Avro's ten bytes) and the offset after it."""
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than ten bytes")


def _past_end(what: str) -> EOFError:
    return EOFError(f"the body ends inside {what}")


_HELPERS: dict[str, Any] = {
    "_long": _long,
    "_past_end": _past_end,
    "_EPOCH": _EPOCH,
    "_timedelta": timedelta,
    "_float": struct.Struct("<f").unpack_from,
    "_double": struct.Struct("<d").unpack_from,
}


def compile_reader(schema: Any, fields: Collection[str] | None = None) -> Reader:
    """The function that reads a record of `schema` (parsed JSON) as fastavro's schemaless_reader.

    The function takes the data and the offset the Avro body starts at (5 after a
    Confluent header). With `fields`, the record it returns has only those of its
    top-level fields (ValueError for a name the schema does not have). Raises
    `UnsupportedSchemaError` for a schema it cannot generate a reader for.
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise UnsupportedSchemaError("the top-level schema must be a record")
    if fields is not None:
        unknown = set(fields) - {field["name"] for field in schema.get("fields", [])}
        if unknown:
            raise ValueError(f"fields the schema does not have: {sorted(unknown)}")
    generator = _Generator(None if fields is None else frozenset(fields))
    generator.line("def read(data, pos):")
    generator.indent += 1
    generator.line("end = len(data)")
    result = generator.variable("r")
    generator.record(schema, result, namespace=None)
    # A slice past the end is short, not an error: one check covers every string read.
    generator.line("if pos > end:")
    generator.line("    raise _past_end('the record')")
    generator.line(f"return {result}")
    namespace = dict(_HELPERS)
    exec(compile(generator.source(), "<avro reader>", "exec"), namespace)  # noqa: S102
    read: Reader = namespace["read"]
    read.source = generator.source()  # type: ignore[attr-defined]  # for a reader debugging it
    return read


class _Generator(CodeGenerator):
    def __init__(self, kept: frozenset[str] | None) -> None:
        super().__init__()
        self.kept = kept  # the top-level fields returned; None: all
        # Reading a value nobody keeps: walk over it, checking it, without building it.
        self.skipping = False

    # -- types -------------------------------------------------------------------------

    def value(self, schema: Any, var: str, namespace: str | None) -> None:
        """Code that reads a value of `schema` at `pos` into `var` and moves `pos` past it."""
        if isinstance(schema, list):
            self.union(schema, var, namespace)
            return
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                self.primitive(schema, var)
            else:
                self.value(self.resolve(schema, namespace), var, namespace)
            return
        if not isinstance(schema, dict):
            raise UnsupportedSchemaError(f"not a schema: {schema!r}")
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if kind == "long" and logical == "timestamp-millis":
            millis = self.variable("m")
            self.long(millis)
            if not self.skipping:
                self.line(f"{var} = _EPOCH + _timedelta(milliseconds={millis})")
        elif logical is not None:
            raise UnsupportedSchemaError(f"logical type {logical!r}")
        elif kind in _PRIMITIVES:
            self.primitive(kind, var)
        elif kind == "record":
            self.record(schema, var, namespace)
        elif kind == "array":
            self.array(schema, var, namespace)
        elif kind == "map":
            self.map(schema, var, namespace)
        else:
            raise UnsupportedSchemaError(f"type {kind!r}")

    def long(self, var: str) -> None:
        """A zig-zag varint: one byte (below 64 in magnitude) inline, longer ones by `_long`."""
        self.line("b = data[pos]")
        self.line("if b < 128:")
        self.line(f"    {var} = (b >> 1) ^ -(b & 1)")
        self.line("    pos += 1")
        self.line("else:")
        self.line(f"    {var}, pos = _long(data, pos)")

    def primitive(self, kind: str, var: str) -> None:
        if kind == "null":
            self.line(f"{var} = None")
        elif kind == "boolean":
            # Any byte but 0 is true, as fastavro reads it.
            self.line(f"{var} = data[pos] != 0")
            self.line("pos += 1")
        elif kind in ("int", "long"):
            self.long(var)
        elif kind in ("float", "double"):
            self.line(f"{var} = _{kind}(data, pos)[0]")
            self.line(f"pos += {4 if kind == 'float' else 8}")
        else:  # string, bytes: a length, then the bytes
            size, stop = self.variable("n"), self.variable("e")
            self.long(size)
            self.line(f"{stop} = pos + {size}")
            self.line(f"if {size} < 0 or {stop} > end:")
            self.line(f"    raise _past_end({kind!r})")
            if not self.skipping:
                decode = ".decode()" if kind == "string" else ""
                self.line(f"{var} = data[pos:{stop}]{decode}")
            self.line(f"pos = {stop}")

    def union(self, branches: list[Any], var: str, namespace: str | None) -> None:
        null_index = self.null_branch(branches)
        # The branch index is a varint of one byte: 0 or 2 (zig-zag of 0 and 1).
        self.line("b = data[pos]")
        self.line("pos += 1")
        self.line(f"if b == {null_index << 1}:")
        self.line(f"    {var} = None")
        self.line(f"elif b == {(1 - null_index) << 1}:")
        self.indent += 1
        self.value(branches[1 - null_index], var, namespace)
        self.indent -= 1
        self.line("else:")
        self.line("    raise ValueError('a union branch index out of range')")

    def record(self, schema: dict[str, Any], var: str, namespace: str | None) -> None:
        name = self.define(schema, namespace)
        if name in self.expanding:
            raise UnsupportedSchemaError(f"recursive record {name}")
        self.expanding.add(name)
        inner = name.rpartition(".")[0] or None
        # Only the top-level record is projected: the first one generated.
        kept, self.kept = self.kept, None
        outer_skipping = self.skipping
        fields: list[tuple[str, str]] = []
        for field in schema.get("fields", []):
            field_var = self.variable("v")
            self.skipping = outer_skipping or (kept is not None and field["name"] not in kept)
            self.value(field["type"], field_var, inner)
            if not self.skipping:
                fields.append((field["name"], field_var))
        self.skipping = outer_skipping
        if not self.skipping:
            self.line(f"{var} = {{{', '.join(f'{key!r}: {v}' for key, v in fields)}}}")
        elif not schema.get("fields"):
            self.line("pass")  # an empty record skipped: a statement for its block
        self.expanding.discard(name)

    def blocks(self, count: str, sized: bool) -> None:
        """The count of a block of an array or map; a negative count is followed by a size.

        `sized`: every item takes at least a byte, so a count beyond the bytes left is
        corrupt data, refused before looping over it.
        """
        self.long(count)
        self.line(f"if {count} < 0:")
        self.line(f"    {count} = -{count}")
        self.line("    _, pos = _long(data, pos)")
        if sized:
            self.line(f"if {count} > end - pos:")
            self.line("    raise _past_end('an array or map')")

    def sized(self, schema: Any, namespace: str | None) -> bool:
        """Whether every value of `schema` takes a byte or more (null, empty records do not)."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            schema = self.resolve(schema, namespace)
        if isinstance(schema, dict):
            if schema.get("type") == "record":
                inner = self.define(schema, namespace).rpartition(".")[0] or None
                return any(self.sized(f["type"], inner) for f in schema.get("fields", []))
            schema = schema.get("type")
        return schema not in ("null", None)

    def array(self, schema: dict[str, Any], var: str, namespace: str | None) -> None:
        item = self.variable("item")
        if not self.skipping:
            self.line(f"{var} = []")

        def read_item() -> None:
            self.value(schema["items"], item, namespace)
            if not self.skipping:
                self.line(f"{var}.append({item})")

        self.repeated(self.sized(schema["items"], namespace), read_item)

    def map(self, schema: dict[str, Any], var: str, namespace: str | None) -> None:
        key, item = self.variable("k"), self.variable("x")
        if not self.skipping:
            self.line(f"{var} = {{}}")

        def read_entry() -> None:
            self.primitive("string", key)
            self.value(schema["values"], item, namespace)
            if not self.skipping:
                self.line(f"{var}[{key}] = {item}")

        self.repeated(True, read_entry)

    def repeated(self, sized: bool, read_one: Callable[[], None]) -> None:
        """An array's or map's blocks: a count, that many items, until a count of 0."""
        count = self.variable("c")
        self.blocks(count, sized)
        self.line(f"while {count}:")
        self.indent += 1
        self.line(f"for _ in range({count}):")
        self.indent += 1
        read_one()
        self.indent -= 1
        self.blocks(count, sized)
        self.indent -= 1

"""Hypothesis strategies shared by the generated Avro writer's and reader's tests: schemas of
the kinds the generators cover, and values fastavro writes for a schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "string", "bytes"]
TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}


# --- values of a schema ----------------------------------------------------------------------

offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=9))]
)
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
# fastavro writes a naive datetime as local time (time.mktime); both writers share that.
naive = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1))


def values(schema: Any, named: dict[str, Any], strict: bool = False) -> st.SearchStrategy[Any]:
    """Values fastavro writes for `schema`. Outside a union (`strict` False) also what its C
    conversions take there: booleans and floats for integers, any truth for a boolean."""
    if isinstance(schema, list):
        return st.one_of([values(b, named, strict=True) for b in schema])
    if isinstance(schema, str):
        if schema not in PRIMITIVES:
            return values(named[schema], named, strict)
        exact = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32),
            "double": st.floats(),
            "string": st.text(),
            "bytes": st.binary(),
        }[schema]
        if strict:
            return exact
        loose = {
            "boolean": st.none() | st.integers(-2, 2) | st.text(max_size=2),
            "int": st.booleans() | st.floats(-(2**31) + 1, 2**31 - 1),
            "long": st.booleans() | st.floats(-(2**53), 2**53),
            "float": st.booleans() | st.integers(-(2**20), 2**20),
            "double": st.booleans() | st.integers(-(2**53), 2**53),
        }.get(schema)
        return exact if loose is None else exact | loose
    if schema.get("logicalType") == "timestamp-millis":
        stamps = aware | naive | st.integers(-(2**62), 2**62)
        return stamps if strict else stamps | st.booleans() | st.floats(-(2**53), 2**53)
    kind = schema["type"]
    if kind == "array":
        return st.lists(values(schema["items"], named, strict), max_size=4)
    if kind == "map":
        entries = values(schema["values"], named, strict)
        return st.dictionaries(st.text(max_size=5), entries, max_size=4)
    if kind == "record":
        named.setdefault(schema["name"], schema)
        named.setdefault(f"{schema.get('namespace')}.{schema['name']}", schema)
        required = {f["name"]: values(f["type"], named, strict) for f in schema["fields"]}
        optional = {f["name"]: required.pop(f["name"]) for f in schema["fields"] if "default" in f}
        return st.fixed_dictionaries(required, optional=optional)
    return values(kind, named, strict)


def schemas() -> st.SearchStrategy[Any]:
    counter = iter(range(10**9))

    def record(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        field_types = st.lists(children, min_size=0, max_size=5)
        return field_types.map(
            lambda types: {
                "type": "record",
                "name": f"R{next(counter)}",
                "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(types)],
            }
        )

    leaves = st.sampled_from([*PRIMITIVES, TIMESTAMP])

    def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        non_null = children.filter(lambda s: s != "null" and not isinstance(s, list))
        return (
            st.builds(lambda s: {"type": "array", "items": s}, children)
            | st.builds(lambda s: {"type": "map", "values": s}, children)
            | st.builds(
                lambda s, first: ["null", s] if first else [s, "null"], non_null, st.booleans()
            )
            | record(children)
        )

    return record(st.recursive(leaves, nested, max_leaves=12))

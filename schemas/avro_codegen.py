"""What the generated Avro writer and reader share: emitting code, and resolving named types."""

from __future__ import annotations

from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


class UnsupportedSchemaError(Exception):
    """The schema uses something the generators do not generate code for."""


class CodeGenerator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 0
        self.counter = 0
        self.named: dict[str, Any] = {}
        self.expanding: set[str] = set()

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def variable(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def define(self, schema: dict[str, Any], namespace: str | None) -> str:
        name = schema.get("name")
        if not isinstance(name, str):
            raise UnsupportedSchemaError("a record without a name")
        space = schema.get("namespace", namespace)
        full = name if "." in name or not space else f"{space}.{name}"
        self.named.setdefault(full, schema)
        return full

    def resolve(self, name: str, namespace: str | None) -> Any:
        for candidate in (f"{namespace}.{name}" if namespace else name, name):
            if candidate in self.named:
                return self.named[candidate]
        raise UnsupportedSchemaError(f"unknown named type {name!r}")

    def null_branch(self, branches: list[Any]) -> int:
        """The index of `null` in a union of null and one other type."""
        nulls = [i for i, b in enumerate(branches) if b == "null" or b == {"type": "null"}]
        if len(branches) != 2 or len(nulls) != 1:
            raise UnsupportedSchemaError("a union other than null and one type")
        return nulls[0]

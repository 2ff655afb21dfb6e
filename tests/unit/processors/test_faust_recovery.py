"""The pure parts of the bulk-recovery fix: which records a batch keeps, lazy decoding.

The fix against real Faust and a real broker: tests/integration/test_faust_fixes.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from processors.faust_recovery import RestoredEvent, _last_per_key, reseek_stalled


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None = None


@given(st.lists(st.sampled_from([b"a", b"b", b"c", None]), max_size=40))
def test_the_kept_records_leave_a_store_as_applying_every_record_would(keys: list[Any]) -> None:
    records = [Record(offset, key) for offset, key in enumerate(keys)]
    kept = _last_per_key(records)

    def applied(batch: list[Record]) -> dict[Any, int]:
        store: dict[Any, int] = {}
        for record in batch:
            store[record.key] = record.offset
        return store

    assert applied(kept) == applied(records)
    assert [r.offset for r in kept] == sorted(r.offset for r in kept)
    assert len(kept) == len(set(keys))
    if records:  # the last record is kept: the batch's offset is still reached
        assert kept[-1] == records[-1]


class CountingSchema:
    allow_empty = False

    def __init__(self) -> None:
        self.loads = 0

    def loads_key(self, app: Any, message: Any) -> Any:
        self.loads += 1
        return message.key.decode()

    def loads_value(self, app: Any, message: Any) -> Any:
        self.loads += 1
        return json.loads(message.value)


def test_an_event_decodes_its_key_and_value_once_and_only_when_asked() -> None:
    schema = CountingSchema()
    event = RestoredEvent(None, schema, Record(7, b"k", b'{"n": 1}'))
    assert schema.loads == 0
    assert event.message.offset == 7
    assert schema.loads == 0  # a store that writes raw bytes never decodes
    assert (event.key, event.value) == ("k", {"n": 1})
    assert (event.key, event.value) == ("k", {"n": 1})
    assert schema.loads == 2


def test_a_tombstone_decodes_to_none_where_the_topic_allows_empty_values() -> None:
    schema = CountingSchema()
    schema.allow_empty = True
    assert RestoredEvent(None, schema, Record(1, b"k", None)).value is None


class StalledRecovery:
    """What reseek_stalled reads of faust's Recovery, and the seek it asks for."""

    def __init__(self, offsets: dict[Any, int], highwaters: dict[Any, int]) -> None:
        self.in_recovery = True
        self.active_offsets = offsets
        self.highwaters = highwaters
        self.app = type("App", (), {"consumer": object()})()
        self.seeks: list[set[Any]] = []

    def active_remaining(self) -> dict[Any, int]:
        return {tp: hw - self.active_offsets[tp] for tp, hw in self.highwaters.items()}

    async def _seek_offsets(
        self, consumer: Any, tps: set[Any], offsets: dict[Any, int], title: str
    ) -> None:
        assert consumer is self.app.consumer and offsets is self.active_offsets
        self.seeks.append(set(tps))


def test_a_recovery_that_stalls_behind_its_end_seeks_those_partitions_again() -> None:
    p0, p1, p2 = (TP("metrics-windows-changelog", n) for n in range(3))
    recovery = StalledRecovery({p0: 9, p1: 4, p2: 7}, {p0: 9, p1: 12, p2: 7})
    assert asyncio.run(reseek_stalled(recovery)) == {p1}
    assert recovery.seeks == [{p1}]  # only the partition behind; the others are done

    recovery.active_offsets[p1] = 12
    assert asyncio.run(reseek_stalled(recovery)) == set()
    recovery.in_recovery = False
    recovery.active_offsets[p1] = 0
    assert asyncio.run(reseek_stalled(recovery)) == set()  # not recovering: left alone
    assert recovery.seeks == [{p1}]

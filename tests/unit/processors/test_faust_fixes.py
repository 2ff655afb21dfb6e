"""The getmany fix: a paused partition's fetched records are fetched again, never skipped;
and the fetcher that waits while every stream buffer is full goes on when one drains.

The consumers here are stand-ins with just the attributes those methods read;
the two-worker dedupe test runs the fixes against a real broker.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from mode import Service

from processors import faust_fixes
from processors.faust_fixes import _getmany, _on_buffer_drop

RAW_0 = TP("onoff.cdr.raw", 0)
RAW_1 = TP("onoff.cdr.raw", 1)


@dataclass
class Record:
    offset: int


@dataclass
class StandInConsumer:
    records: dict[TP, list[Record]]
    active: set[TP]
    assigned: set[TP]
    generation_after: dict[int, int] = field(default_factory=dict)  # yielded count -> new id
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    should_stop: bool = False
    flow_active: bool = True

    def __post_init__(self) -> None:
        self.app = SimpleNamespace(
            consumer_generation_id=1,
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None),
        )
        self._buffered_partitions: set[TP] = set()
        self._paused_partitions: set[TP] = self.assigned - self.active
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)
        self.scheduler = SimpleNamespace(iterate=self._round_robin)
        self.yielded = 0

    def _round_robin(self, records: dict[TP, list[Record]]) -> Any:
        for batch in zip(*records.values(), strict=False):
            for tp, record in zip(records, batch, strict=False):
                if self.yielded in self.generation_after:
                    self.app.consumer_generation_id = self.generation_after[self.yielded]
                yield tp, record

    async def _wait_next_records(self, timeout: float) -> tuple[dict[TP, list[Record]], set[TP]]:  # noqa: ASYNC109
        return self.records, self.active

    def highwater(self, tp: TP) -> int:
        return 1000

    def _to_message(self, tp: TP, record: Record) -> tuple[TP, int]:
        self.yielded += 1
        return tp, record.offset

    def _get_active_partitions(self) -> set[TP]:
        return self.active

    def assignment(self) -> set[TP]:
        return self.assigned

    async def _seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def drain(consumer: StandInConsumer) -> list[tuple[TP, int]]:
    async def handed_over() -> list[tuple[TP, int]]:
        return [message async for _, message in _getmany(consumer, timeout=1.0)]

    return asyncio.run(handed_over())


def batch(*offsets: int) -> list[Record]:
    return [Record(offset) for offset in offsets]


def test_a_paused_partition_is_sought_back_to_its_first_fetched_record() -> None:
    consumer = StandInConsumer(
        records={RAW_0: batch(10, 11, 12), RAW_1: batch(194, 195, 196)},
        active={RAW_0},
        assigned={RAW_0, RAW_1},
    )

    handed_over = drain(consumer)

    assert handed_over == [(RAW_0, 10), (RAW_0, 11), (RAW_0, 12)]
    assert consumer.seeks == [(RAW_1, 194)]
    assert consumer._read_offset[RAW_1] == 193  # so a jump past 194 is seen as one


def test_a_partition_paused_in_the_middle_of_a_batch_keeps_what_was_handed_over() -> None:
    consumer = StandInConsumer(records={RAW_0: batch(10, 11, 12)}, active={RAW_0}, assigned={RAW_0})

    async def pause_after_the_first() -> tuple[Any, list[tuple[TP, int]]]:
        messages = _getmany(consumer, timeout=1.0)
        first = await messages.__anext__()
        consumer.active.clear()  # paused by a rebalance while the batch is handed over
        return first, [message async for _, message in messages]

    first, rest = asyncio.run(pause_after_the_first())

    assert first == (RAW_0, (RAW_0, 10))
    assert rest == []
    assert consumer.seeks == [(RAW_0, 11)]


def test_a_revoked_partition_is_left_to_its_next_owner() -> None:
    consumer = StandInConsumer(records={RAW_1: batch(194, 195)}, active=set(), assigned={RAW_0})

    assert drain(consumer) == []
    assert consumer.seeks == []


def test_a_new_generation_stops_the_batch_without_seeking() -> None:
    consumer = StandInConsumer(
        records={RAW_0: batch(10, 11, 12)},
        active={RAW_0},
        assigned={RAW_0},
        generation_after={2: 2},
    )

    assert drain(consumer) == [(RAW_0, 10), (RAW_0, 11)]
    assert consumer.seeks == []


def test_a_paused_partition_with_a_full_stream_buffer_is_held_back_too() -> None:
    consumer = StandInConsumer(
        records={RAW_0: batch(10, 11), RAW_1: batch(194, 195)},
        active={RAW_0},
        assigned={RAW_0, RAW_1},
    )
    consumer._buffered_partitions = {RAW_0, RAW_1}  # both filled their buffers before the pause

    assert drain(consumer) == [(RAW_0, 10), (RAW_0, 11)]
    assert consumer.seeks == [(RAW_1, 194)]


def test_a_draining_buffer_resumes_only_a_partition_that_is_not_paused() -> None:
    consumer = StandInConsumer(records={}, active=set(), assigned={RAW_0, RAW_1})
    consumer._paused_partitions = {RAW_1}
    consumer._buffered_partitions = {RAW_0, RAW_1}

    _on_buffer_drop(consumer, RAW_0)
    _on_buffer_drop(consumer, RAW_1)

    assert consumer.active == {RAW_0}
    assert consumer._buffered_partitions == set()


class FetchingConsumer(Service):
    """What `_wait_next_records` reads of a consumer, on mode's Service (its wait_first)."""

    def __init__(self, active: set[TP], buffered: set[TP]) -> None:
        super().__init__()
        self.app = SimpleNamespace(client_only=False)
        self.flow_active = True
        self.not_waiting_next_records = asyncio.Event()
        self.active, self._buffered_partitions = active, buffered
        self._paused_partitions: set[TP] = set()
        self.fetched: list[set[TP] | None] = []
        self.timeouts: list[float] = []

    def _get_active_partitions(self) -> set[TP]:
        return self.active

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> dict[TP, Any]:  # noqa: ASYNC109
        self.fetched.append(set(active_partitions or ()))
        self.timeouts.append(timeout)
        return {tp: [Record(0)] for tp in active_partitions or ()}


def test_a_fetcher_with_every_buffer_full_goes_on_as_soon_as_one_drains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Faust would sleep the whole wait; with the fix a drained buffer ends it.
    monkeypatch.setattr(faust_fixes, "IDLE_FETCH_WAIT_S", 60.0)
    consumer = FetchingConsumer(active=set(), buffered={RAW_0, RAW_1})
    on_buffer_drop = faust_fixes._waking(_on_buffer_drop)

    async def wait_then_fetch() -> tuple[Any, Any]:
        waiting = asyncio.create_task(faust_fixes._wait_next_records(consumer, timeout=1.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing may be fetched: it waits
        on_buffer_drop(consumer, RAW_1)
        first = await asyncio.wait_for(waiting, timeout=5)
        return first, await faust_fixes._wait_next_records(consumer, timeout=1.0)

    (records, _), (then_records, then_active) = asyncio.run(wait_then_fetch())

    assert records == {}  # the wait itself fetched nothing
    assert then_active == {RAW_1} and list(then_records) == [RAW_1]
    assert consumer.fetched == [{RAW_1}]


def test_with_an_active_partition_it_fetches_at_once_and_waits_briefly_for_records() -> None:
    """A getmany in flight does not see a partition whose buffer drains meanwhile: it waits
    a tenth of a second at most (Faust: the second it is given), so that one is asked
    for again soon."""
    consumer = FetchingConsumer(active={RAW_0}, buffered={RAW_1})

    records, active = asyncio.run(faust_fixes._wait_next_records(consumer, timeout=1.0))

    assert active == {RAW_0} and list(records) == [RAW_0]
    assert consumer.timeouts == [faust_fixes.FETCH_WAIT_S] and faust_fixes.FETCH_WAIT_S <= 0.1
    assert consumer.not_waiting_next_records.is_set()

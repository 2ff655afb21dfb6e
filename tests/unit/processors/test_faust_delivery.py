"""Eager delivery: a hand-over that does not block runs inline; one that blocks runs as Faust
runs it, raced by `wait_first` against the flow's suspension, with cancellation and errors
reaching the coroutine as they would reach a task."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from mode import Service

from processors.faust_delivery import deliver


class StandInConsumer(Service):
    """A real mode Service (its wait_first is Faust's), with the consumer's flow event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.races = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109
        self.races += 1
        return await super().wait_first(*coros, timeout=timeout)


def test_a_hand_over_that_does_not_block_runs_inline_without_a_race() -> None:
    async def scenario() -> tuple[list[int], int]:
        consumer, queue = StandInConsumer(), asyncio.Queue[int]()

        async def hand_over(n: int) -> None:
            await queue.put(n)  # room on the queue: put does not suspend

        for n in range(5):
            await deliver(consumer, hand_over(n))
        return [queue.get_nowait() for _ in range(5)], consumer.races

    assert asyncio.run(scenario()) == ([0, 1, 2, 3, 4], 0)


def test_a_hand_over_that_blocks_finishes_once_it_can_in_order() -> None:
    async def scenario() -> tuple[list[int], int]:
        consumer, queue = StandInConsumer(), asyncio.Queue[int](maxsize=1)
        taken: list[int] = []

        async def taker() -> None:
            for _ in range(4):
                await asyncio.sleep(0.01)  # the stream is slow: the queue fills up
                taken.append(await queue.get())

        task = asyncio.ensure_future(taker())
        for n in range(4):
            await deliver(consumer, queue.put(n))
        await task
        return taken, consumer.races

    taken, races = asyncio.run(scenario())
    assert taken == [0, 1, 2, 3]
    assert races >= 2  # every put after the first found the queue full


def test_a_blocked_hand_over_is_cancelled_at_its_await_when_the_flow_is_suspended() -> None:
    async def scenario() -> list[str]:
        consumer, seen = StandInConsumer(), []
        never = asyncio.get_running_loop().create_future()

        async def hand_over() -> None:
            try:
                await never
            except asyncio.CancelledError:
                seen.append("cancelled at the await")
                raise
            finally:
                seen.append("finally ran")

        asyncio.get_running_loop().call_later(0.02, consumer.suspend_flow.set)
        await asyncio.wait_for(deliver(consumer, hand_over()), timeout=5)
        await asyncio.sleep(0)  # the cancelled task's last step
        seen.append("never cancelled" if not never.cancelled() else "its future cancelled")
        return seen

    assert asyncio.run(scenario()) == [
        "cancelled at the await",
        "finally ran",
        "its future cancelled",
    ]


def test_an_error_after_the_hand_over_blocked_reaches_the_fetcher() -> None:
    async def scenario() -> str:
        consumer = StandInConsumer()

        async def hand_over() -> None:
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)  # a bare yield, as sleep(0) makes
            raise ValueError("cannot decode")

        try:
            await deliver(consumer, hand_over())
        except ValueError as exc:
            return str(exc)
        return "no error"

    assert asyncio.run(scenario()) == "cannot decode"


def test_an_error_before_the_hand_over_blocks_reaches_the_fetcher() -> None:
    async def scenario() -> str:
        async def hand_over() -> None:
            raise KeyError("no callback for the partition")

        try:
            await deliver(StandInConsumer(), hand_over())
        except KeyError as exc:
            return str(exc)
        return "no error"

    assert asyncio.run(scenario()) == "'no callback for the partition'"


def test_the_producer_buffer_size_is_faust_s_with_the_setting_read_once() -> None:
    from faust.transport.producer import ProducerBuffer

    from processors.faust_delivery import _buffer_size

    class Conf:
        reads = 0

        @property
        def producer_threaded(self) -> bool:
            Conf.reads += 1
            return False

    buffer = SimpleNamespace(
        app=SimpleNamespace(conf=Conf()), pending=asyncio.Queue[int](), queue=None
    )
    for n in range(3):
        buffer.pending.put_nowait(n)
    faust_size = ProducerBuffer.size.fget  # type: ignore[attr-defined]
    assert [_buffer_size(buffer), _buffer_size(buffer)] == [3, 3]
    assert Conf.reads == 1
    assert [faust_size(buffer), faust_size(buffer)] == [3, 3]
    assert Conf.reads == 1 + 2  # Faust's own property reads it every time

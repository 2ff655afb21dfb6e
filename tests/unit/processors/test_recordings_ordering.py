"""Per-call lanes, offsets acked in order, and the retry schedule, with fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from processors.recordings.errors import (
    RecordingExpiredError,
    RecordingFailedError,
    TransientFetchError,
)
from processors.recordings.fetch import retrying
from processors.recordings.ordering import Lanes, OrderedAcks
from processors.recordings.settings import RecordingSettings


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Event:
    message: Message


def test_acks_follow_offsets_whatever_the_finishing_order() -> None:
    async def scenario() -> list[tuple[int, int]]:
        acked: list[tuple[int, int]] = []

        async def ack(event: Event) -> None:
            acked.append((event.message.partition, event.message.offset))

        acks = OrderedAcks(ack)
        tickets = [acks.enter(Event(Message("t", p, o))) for o in range(3) for p in (0, 1)]
        by = {(t.event.message.partition, t.event.message.offset): t for t in tickets}
        assert await acks.finish(by[(0, 1)]) == []
        assert await acks.finish(by[(0, 2)]) == []
        assert await acks.finish(by[(1, 0)]) != []
        assert [t.event.message.offset for t in await acks.finish(by[(0, 0)])] == [0, 1, 2]
        return acked

    assert asyncio.run(scenario()) == [(1, 0), (0, 0), (0, 1), (0, 2)]


def test_lanes_serialize_one_key_and_parallelize_keys() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        lanes = Lanes()
        gate = asyncio.Event()

        def work(name: str, wait: bool = False):
            async def run() -> None:
                log.append(f"start {name}")
                if wait:
                    await gate.wait()
                log.append(f"end {name}")

            return run

        first = lanes.submit("call-1", work("a1", wait=True))
        second = lanes.submit("call-1", work("a2"))
        other = lanes.submit("call-2", work("b1"))
        await other
        gate.set()
        await asyncio.gather(first, second)
        assert len(lanes) == 0
        return log

    log = asyncio.run(scenario())
    assert log.index("end b1") < log.index("end a1") < log.index("start a2")


def test_a_failed_task_does_not_block_its_lane() -> None:
    async def scenario() -> bool:
        lanes = Lanes()
        ran = asyncio.Event()

        async def boom() -> None:
            raise RuntimeError("bug")

        async def after() -> None:
            ran.set()

        failed = lanes.submit("k", boom)
        await lanes.submit("k", after)
        assert isinstance(failed.exception(), RuntimeError)
        return ran.is_set()

    assert asyncio.run(scenario())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_transient_errors_back_off_exponentially_until_the_deadline() -> None:
    settings = RecordingSettings(retry_base_delay_s=1, retry_max_delay_s=8, retry_deadline_s=30)
    clock = FakeClock()
    calls = 0

    async def always_500() -> None:
        nonlocal calls
        calls += 1
        raise TransientFetchError("HTTP 500")

    with pytest.raises(RecordingFailedError, match=r"gave up after .* HTTP 500"):
        asyncio.run(
            retrying(always_500, settings, clock=clock.time, sleep=clock.sleep, jitter=lambda: 1.0)
        )
    assert clock.sleeps == [1, 2, 4, 8, 8]
    assert calls == 6 and clock.now <= 30


def test_jitter_spreads_between_half_and_full_delay() -> None:
    settings = RecordingSettings(retry_base_delay_s=4, retry_deadline_s=5)
    clock = FakeClock()

    async def once() -> None:
        raise TransientFetchError("timeout")

    with pytest.raises(RecordingFailedError):
        asyncio.run(retrying(once, settings, clock=clock.time, sleep=clock.sleep, jitter=lambda: 0))
    assert clock.sleeps == [2.0]


def test_expired_and_success_are_not_retried() -> None:
    clock = FakeClock()

    async def gone() -> None:
        raise RecordingExpiredError("HTTP 404")

    with pytest.raises(RecordingExpiredError):
        asyncio.run(retrying(gone, RecordingSettings(), clock=clock.time, sleep=clock.sleep))
    outcomes = iter([TransientFetchError("HTTP 503"), None])

    async def flaky() -> str:
        error = next(outcomes)
        if error:
            raise error
        return "ok"

    assert (
        asyncio.run(retrying(flaky, RecordingSettings(), clock=clock.time, sleep=clock.sleep))
        == "ok"
    )
    assert len(clock.sleeps) == 1


def test_a_long_run_of_failures_keeps_the_queues_bounded() -> None:
    """Issue 9: a failed version is never acked; nothing may pile up behind it."""

    async def scenario() -> tuple[list[int], int, int]:
        acked: list[int] = []

        async def ack(event: Event) -> None:
            acked.append(event.message.offset)

        acks = OrderedAcks(ack)
        first, second = acks.enter(Event(Message("t", 0, 0))), acks.enter(Event(Message("t", 0, 1)))
        failed = acks.enter(Event(Message("t", 0, 2)))
        peak = 0
        # 10 000 more versions, every tenth failing, each finished as soon as it is read,
        # on the blocked partition and on a healthy one.
        for offset in range(3, 10_003):
            for partition in (0, 1):
                ticket = acks.enter(Event(Message("t", partition, offset)))
                if partition == 0 and offset % 10 == 0:
                    acks.fail(ticket)
                else:
                    await acks.finish(ticket)
            if offset == 3:
                acks.fail(failed)
            peak = max(peak, acks.queued())
        # What was read before the failure is still acked when it finishes.
        await acks.finish(second)
        await acks.finish(first)
        return acked, peak, acks.queued()

    acked, peak, left = asyncio.run(scenario())
    assert [offset for offset in acked if offset < 3] == [0, 1]
    assert peak <= 5 and left == 1  # the failed ticket holds its partition's line
    assert 10_002 in acked  # the healthy partition kept being acked


def test_a_revoked_partition_is_forgotten_and_unblocked() -> None:
    async def scenario() -> list[int]:
        acked: list[int] = []

        async def ack(event: Event) -> None:
            acked.append(event.message.offset)

        acks = OrderedAcks(ack)
        acks.fail(acks.enter(Event(Message("t", 0, 0))))
        await acks.finish(acks.enter(Event(Message("t", 0, 1))))
        acks.forget("t", 0)
        assert acks.queued() == 0
        # Assigned again later: read from the committed offset, acked as usual.
        await acks.finish(acks.enter(Event(Message("t", 0, 0))))
        return acked

    assert asyncio.run(scenario()) == [0]

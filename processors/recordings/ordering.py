"""Concurrency without losing order: per-call lanes, and acks in offset order.

Faust hands an agent one event at a time; waiting for each download in turn
would let one slow server hold a whole partition. So the agent starts each
call version as a task and moves on, with two rules:

- Versions of the same call run one after the other (`Lanes`), so the table
  of handled links is read and written by one task at a time per call, and a
  later version sees what an earlier one stored.
- Offsets are acked in order per partition (`OrderedAcks`): an event is acked
  only when it and every earlier event of its partition are finished, so the
  committed offset never passes unfinished work. faust's own gap tracking is
  not relied on: its `_new_offset` commits past a single unacked offset right
  after the committed one.

A version that fails is never acked, so nothing behind it in its partition
can be either, until a restart or a revocation hands the partition over
again. `OrderedAcks.fail` therefore blocks the partition: the tickets behind
the failed one are dropped and later ones are not queued, so a long run of
failures cannot grow the queues (the work still runs; it is redone, or found
done, by the next owner). A queue holds at most the tickets before its first
failure, and that one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any


class Lanes:
    """Runs coroutines one at a time per key, in submission order; keys run in parallel."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[None]] = {}

    def submit(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        previous = self._tails.get(key)

        async def run() -> None:
            if previous is not None:
                # The previous task reports its own errors; only its end matters here.
                await asyncio.wait({previous})
            await work()

        # create_task copies the context, so faust's current_event stays this event.
        task = asyncio.get_running_loop().create_task(run())
        self._tails[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tails.get(key) is done:
                del self._tails[key]

        task.add_done_callback(forget)
        return task

    def __len__(self) -> int:
        return len(self._tails)


@dataclass
class Ticket:
    event: Any
    done: bool = False
    failed: bool = False
    outcome: str = ""


@dataclass
class OrderedAcks:
    """Acks events of each partition in the order they were read, once finished."""

    ack: Callable[[Any], Awaitable[Any]]
    _queues: dict[tuple[str, int], deque[Ticket]] = field(default_factory=dict)
    # Partitions with a failed ticket: nothing more of theirs can be acked.
    _blocked: set[tuple[str, int]] = field(default_factory=set)

    def enter(self, event: Any) -> Ticket:
        ticket = Ticket(event)
        tp = _tp(event)
        if tp not in self._blocked:
            self._queues.setdefault(tp, deque()).append(ticket)
        return ticket

    async def finish(self, ticket: Ticket) -> list[Ticket]:
        """Marks `ticket` done; acks and returns every ticket that became ackable, in order."""
        ticket.done = True
        queue = self._queues.get(_tp(ticket.event))
        acked = []
        while queue and queue[0].done:
            head = queue.popleft()
            await self.ack(head.event)
            acked.append(head)
        return acked

    def fail(self, ticket: Ticket) -> None:
        """`ticket` will never be acked: drops what is behind it and blocks its partition."""
        ticket.failed = True
        tp = _tp(ticket.event)
        queue = self._queues.get(tp)
        if queue is None or not any(queued is ticket for queued in queue):
            return  # not queued: its partition is blocked already, or was revoked since
        # Keep what is ahead (it may still be acked when it finishes) and the failed
        # ticket itself, which holds the line: finish() stops at it.
        while queue[-1] is not ticket:
            queue.pop()
        self._blocked.add(tp)

    def forget(self, topic: str, partition: int) -> None:
        """After a revocation: the events will be read again by the new owner."""
        self._queues.pop((topic, partition), None)
        self._blocked.discard((topic, partition))

    def queued(self) -> int:
        """How many tickets wait, over every partition."""
        return sum(len(queue) for queue in self._queues.values())


def _tp(event: Any) -> tuple[str, int]:
    return (event.message.topic, event.message.partition)

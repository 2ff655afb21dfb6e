"""Eager delivery: the `eager-delivery` speed-up to faust-streaming (see faust_fixes).

Faust's fetcher hands each record to the conductor through
`wait_first(callback(message), suspend_flow.wait())`: per record, two tasks, two
more for the consumer's stopped and crashed events, an `asyncio.wait` and the
cancellation of the three losers. The race exists for one case only: the callback
blocks (a stream's buffer is full, flow control is acquired) and a rebalance must
be able to stop the wait. Profiled in the dedupe worker (py-spy, 2026-12-03), that
machinery took about a fifth of the worker's busy main thread, more than the
callback itself.

Here the callback's coroutine is run by hand to its first suspension. Nearly
always it finishes there (the record is on the stream's queue) and nothing else
is created. If it suspends, the rest of it runs exactly as Faust runs it: in a
task, raced by `wait_first` against the flow's suspension. `_Resume` hands the
task the future the coroutine is waiting on, as `yield from` would, so
cancellation and exceptions reach the coroutine as they would had it been a task
from the start.

The conductor also checks the producer's buffer before each record; `_buffer_size`
answers without a settings lookup per record.

`_drain_messages` is a copy of faust-streaming 0.15.3's, changed only where said.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from mode import Service


class _Resume:
    """Awaitable that goes on with a coroutine already started by hand."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                try:
                    yield waiting_on
                except BaseException as exc:
                    # A cancellation (or anything thrown in) goes into the coroutine, as a
                    # task would throw it at the await the coroutine is suspended in.
                    waiting_on = coro.throw(exc)
                else:
                    waiting_on = coro.send(None)
            except StopIteration as stop:
                return stop.value


async def _resumed(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _Resume(coro, waiting_on)


async def deliver(consumer: Any, coro: Coroutine[Any, Any, Any]) -> None:
    """Runs the callback's coroutine; races it with the flow's suspension only if it blocks."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return
    await consumer.wait_first(_resumed(coro, waiting_on), consumer.suspend_flow.wait())


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
    """faust.transport.consumer.Consumer._drain_messages, delivering eagerly."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        # Changed: Faust awaits wait_first(callback(message),
                        # suspend_flow.wait()) for every record.
                        await deliver(self, callback(message))
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def _buffer_size(self: Any) -> int:
    """faust.transport.producer.ProducerBuffer.size, reading the setting once.

    The conductor checks the producer buffer before every record it hands over;
    Faust's property looked `producer_threaded` up in the settings each time (about
    2.5 % of a dedupe worker's main thread). The setting cannot change once running.
    """
    threaded = self.__dict__.get("_onoff_threaded")
    if threaded is None:
        threaded = self._onoff_threaded = bool(self.app.conf.producer_threaded)
    if threaded:
        if not self.queue:
            return 0
        return len(self.queue._queue)
    return len(self.pending._queue)


def install(consumer_cls: Any, producer_buffer_cls: Any) -> None:
    consumer_cls._drain_messages = _drain_messages
    producer_buffer_cls.size = property(_buffer_size)

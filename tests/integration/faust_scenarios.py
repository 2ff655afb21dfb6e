"""The situation each Faust fix is for, built on purpose with real Faust and the real broker.

`tests/integration/test_faust_fixes.py` runs each scenario in a child process
(`python -m tests.integration.faust_scenarios <scenario> '<json arguments>'`),
because the fixes patch Faust's classes for a whole process and
ONOFF_BRIDGE_FAUST_FIXES_OFF decides which (processors/faust_fixes.py). A
scenario writes what it saw as JSON to the file `report` names; the test judges it.

Where a race was needed, the scenario does not wait for luck: it hooks the real
objects at the point where the race happens (a partition paused right after the
first record of a fetch is handed over; a fetch that lands between the resume
and the seek) and makes that interleaving happen every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from faust.types import TP

from processors import faust_fixes

DEADLINE_S = 60.0
Scenario = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _app(args: dict[str, Any], **conf: Any) -> faust.App:
    faust_fixes.check_version()
    faust_fixes.apply()
    return faust.App(
        args["app_id"],
        broker=f"kafka://{args['bootstrap']}",
        web_enabled=False,
        topic_allow_declare=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        datadir=args.get("data_dir", "."),
        **conf,
    )


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=0)
    if producer.flush(30):
        raise RuntimeError("records not delivered")


# -- producer-flush -------------------------------------------------------------------


async def producer_flush(args: dict[str, Any]) -> dict[str, Any]:
    """Table writes queued in Faust's ProducerBuffer while the first cannot be handed over.

    The writes go to a changelog topic that does not exist yet (the broker does not
    create topics on its own), so the producer waits for its metadata inside the
    first hand-over: the wait of a worker's first write to a topic, made long. Faust's
    `flush` is awaited meanwhile, as before an offset commit; the topic is created
    after `create_after_s`, or as soon as flush returns. Reports how many writes were
    still queued or being handed over when flush returned.
    """
    app = _app(args)
    topic = app.topic(args["topic"], key_serializer="raw", value_serializer="raw")
    producer = app.producer
    await producer.start()
    buffer = producer.buffer
    futures = [topic.send_soon(key=f"key-{n}".encode(), value=b"v") for n in range(args["writes"])]
    started = time.monotonic()
    flush = asyncio.ensure_future(buffer.flush())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(flush), timeout=args["create_after_s"])
    returned_before_topic = flush.done()
    left = buffer.size + getattr(buffer, "_onoff_in_flight", 0) if flush.done() else None
    admin = AdminClient({"bootstrap.servers": args["bootstrap"]})
    new_topic = NewTopic(args["topic"], num_partitions=1, replication_factor=1)
    for future in admin.create_topics([new_topic]).values():
        future.result(30)
    await asyncio.wait_for(flush, timeout=DEADLINE_S)
    returned_after_s = time.monotonic() - started
    if left is None:
        left = buffer.size + getattr(buffer, "_onoff_in_flight", 0)
    await producer.flush()
    await asyncio.wait_for(asyncio.gather(*futures), timeout=DEADLINE_S)
    return {
        "writes": len(futures),
        "queued_when_flush_returned": left,
        "flush_returned_before_topic": returned_before_topic,
        "flush_returned_after_s": round(returned_after_s, 2),
    }


# -- paused-records ---------------------------------------------------------------------


def paused_records_app(args: dict[str, Any], report: dict[str, Any]) -> faust.App:
    """An agent on a topic with `records` records waiting; the partition is paused right
    after the first of them is handed over, as a rebalance starting then would, and
    resumed once the fetcher has moved on to its next fetch."""
    app = _app(args)
    topic = app.topic(args["topic"], key_serializer="raw", value_serializer="raw")
    tp = TP(args["topic"], 0)
    seen: list[int] = report.setdefault("seen", [])

    @app.agent(topic)
    async def read(stream: Any) -> None:
        async for event in stream.events():
            seen.append(event.message.offset)

    consumer: Any = app.consumer
    to_message = consumer._to_message
    fetch = consumer._wait_next_records
    state = {"paused": False, "fetches_after_pause": 0}

    def pause_after_first(tp_: TP, record: Any) -> Any:
        message = to_message(tp_, record)
        if tp_ == tp and not state["paused"]:
            state["paused"] = True
            consumer.pause_partitions({tp})
        return message

    async def counting_fetch(timeout: float) -> Any:  # noqa: ASYNC109
        if state["paused"]:
            state["fetches_after_pause"] += 1
        return await fetch(timeout)

    consumer._to_message = pause_after_first
    consumer._wait_next_records = counting_fetch

    async def scenario() -> None:
        records = args["records"]
        await _until(lambda: bool(state["paused"] and seen), "the first record")
        # The fetch that held the others is over once the next one starts.
        await _until(lambda: state["fetches_after_pause"] > 0, "the next fetch")
        consumer.resume_partitions({tp})
        _produce(args["bootstrap"], args["topic"], [(b"after-resume", b"v")])
        with contextlib.suppress(TimeoutError):
            await _until(lambda: records in seen, "the record written after the resume")
        _finish(report, args["report"])

    app.task(scenario)
    return app


# -- seek-before-resume -------------------------------------------------------------------


def seek_before_resume_app(args: dict[str, Any], report: dict[str, Any]) -> faust.App:
    """A worker whose fetch position is ahead of its group's committed offset when its
    table recovery completes, and a fetch of the stream partition that lands between
    its resume and the seek to the committed offset.

    The group starts at `ahead` (the test commits it before the worker starts), so the
    worker's position is there; just before recovery completes, the worker commits
    `committed`, behind it: the state of a worker that had fetched further than it had
    processed. If the partition is resumed before the seek, the seek waits for a fetch
    of it, and that fetch is handed over only after the seek (a slow hand-over), so
    the interleaving happens every time; a partition still paused at the seek gets no
    such fetch. Reports the offsets the agent saw.
    """
    app = _app(args)
    topic = app.topic(args["topic"], key_serializer="raw", value_serializer="raw")
    changelog = app.topic(
        args["changelog"], key_serializer="raw", value_serializer="json", internal=True
    )
    app.Table("state", partitions=1, changelog_topic=changelog)
    tp = TP(args["topic"], 0)
    seen: list[int] = report.setdefault("seen", [])

    @app.agent(topic)
    async def read(stream: Any) -> None:
        async for event in stream.events():
            seen.append(event.message.offset)

    consumer: Any = app.consumer
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not in TableManagerT
    perform_seek = consumer.perform_seek
    fetch = consumer._wait_next_records
    fetched, seeked = asyncio.Event(), asyncio.Event()
    state = {"armed": False, "interleaved": False}

    async def completed(generation_id: int = 0) -> None:
        if not state["armed"]:
            state["armed"] = True
            await consumer._commit({tp: args["committed"]})
        await type(recovery).on_recovery_completed(recovery, generation_id)

    async def seek_after_a_fetch() -> None:
        if state["armed"] and not seeked.is_set() and tp in consumer._get_active_partitions():
            await asyncio.wait_for(fetched.wait(), timeout=DEADLINE_S)
            state["interleaved"] = True
        await perform_seek()
        seeked.set()

    async def hand_over_after_the_seek(timeout: float) -> Any:  # noqa: ASYNC109
        records, active = await fetch(timeout)
        # Only a fetch for the resumed partition: one that lands while it is paused is
        # held back by Faust (`paused-records`) and must not be delayed past the resume.
        resumed = tp in consumer._get_active_partitions()
        if state["armed"] and not seeked.is_set() and resumed and records and records.get(tp):
            fetched.set()
            await seeked.wait()
        return records, active

    recovery.on_recovery_completed = completed
    consumer.perform_seek = seek_after_a_fetch
    consumer._wait_next_records = hand_over_after_the_seek

    async def scenario() -> None:
        last = args["records"] - 1
        await _until(lambda: last in seen, "the last record")
        _produce(args["bootstrap"], args["topic"], [(b"after", b"v")])
        await _until(lambda: last + 1 in seen, "the record written after")
        await consumer.commit()
        report["interleaved"] = state["interleaved"]
        _finish(report, args["report"])

    app.task(scenario)
    return app


# -- bulk-recovery -------------------------------------------------------------------


def bulk_recovery_app(args: dict[str, Any], report: dict[str, Any]) -> faust.App:
    """A table restored from a changelog the test filled; reports the restored contents,
    how many changelog records went through Faust's per-record path, and the time."""
    app = _app(args, store=f"{args['store']}://")
    changelog = app.topic(
        args["changelog"],
        key_serializer="raw",
        value_serializer="json",
        partitions=args["partitions"],
        internal=True,
    )
    table: Any = app.Table("state", partitions=args["partitions"], changelog_topic=changelog)
    table.key_serializer = "raw"
    table.value_serializer = "json"
    per_record = 0
    on_changelog_event = table.on_changelog_event

    async def counting(event: Any) -> None:
        nonlocal per_record
        per_record += 1
        await on_changelog_event(event)

    table.on_changelog_event = counting
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not in TableManagerT
    started = time.monotonic()

    async def scenario() -> None:
        await _until(
            lambda: recovery.completed.is_set() and not recovery.in_recovery,
            "the end of the recovery",
            timeout_s=300,
        )
        report["seconds"] = round(time.monotonic() - started, 2)
        report["per_record"] = per_record
        report["contents"] = {key.decode(): value for key, value in table.items()}
        _finish(report, args["report"])

    app.task(scenario)
    return app


def _finish(report: dict[str, Any], path: str) -> None:
    with open(path, "w") as out:
        json.dump(report, out)
    # Leaving now is enough: the test judges the report, and the group is the test's own.
    os._exit(0)


APPS = {
    "paused-records": paused_records_app,
    "seek-before-resume": seek_before_resume_app,
    "bulk-recovery": bulk_recovery_app,
}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    if name == "producer-flush":
        _finish(asyncio.run(producer_flush(args)), args["report"])
    report: dict[str, Any] = {}
    worker = faust.Worker(APPS[name](args, report), loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

"""The quix-streams peer of dedupe, for `make bench-peers` only (runs in var/bench/quix-venv).

The same job as `processors.dedupe`, written the way quix-streams is meant to be
used: an Application with RocksDB state and at-least-once processing, one
stateful `apply` per delivery, the versions sent on with `to_topic`. It uses
this project's own `decide` (the fold and the retention rule) and Avro codec, so
the two contenders differ only in the framework around them. The state holds
each call's Avro bytes, as dedupe's RocksDB store does: one encoding per
version, one decoding per delivery.

Configured by its environment (the bench sets it); stops once it has processed
BENCH_PEER_EXPECTED deliveries and writes BENCH_PEER_RESULT: the count, the
number of versions, and the seconds from the first processed delivery to the last.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from quixstreams import Application, State
from quixstreams.state.rocksdb import RocksDBOptions

from processors.merge import Outcome, decide
from processors.records import EventClock
from schemas import AvroCodec, SchemaName, registry_client

RETENTION = timedelta(days=30)  # the worker's default (ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS)


def as_bytes(value: Any) -> bytes:
    # quix passes the state's keys through `dumps` too: "call" becomes b"call".
    return value.encode() if isinstance(value, str) else bytes(value)


def identity(value: bytes) -> bytes:
    return value


def main() -> None:
    env = os.environ
    source, output = env["BENCH_PEER_SOURCE"], env["BENCH_PEER_OUTPUT"]
    expected = int(env["BENCH_PEER_EXPECTED"])
    registry = registry_client(env["BENCH_PEER_REGISTRY"])
    events = AvroCodec(registry, SchemaName.CALL_EVENT, source)
    calls = AvroCodec(registry, SchemaName.CALL, output)
    app = Application(
        broker_address=env["BENCH_PEER_BOOTSTRAP"],
        consumer_group=env["BENCH_PEER_GROUP"],
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=2.0,  # the worker's ONOFF_BRIDGE_COMMIT_INTERVAL_S
        state_dir=env["BENCH_PEER_STATE_DIR"],
        # Values are the calls' Avro bytes already; quix's default is JSON.
        rocksdb_options=RocksDBOptions(dumps=as_bytes, loads=identity),
        # The worker's producer settings (processors/app.py).
        producer_extra_config={"linger.ms": 20, "compression.type": "lz4", "acks": "all"},
        loglevel="WARNING",
    )
    source_topic = app.topic(source, key_deserializer="bytes", value_deserializer="bytes")
    output_topic = app.topic(output, key_serializer="bytes", value_serializer="bytes")
    clock = EventClock()
    progress = {
        "processed": 0,
        "versions": 0,
        "first": 0.0,
        "last": 0.0,
        "cpu_first": 0.0,
        "cpu_last": 0.0,
    }

    def dedupe(value: bytes, state: State) -> list[bytes]:
        delivery = events.decode(value)
        clock.advance(delivery["ingest"]["receivedAt"])
        stored = state.get("call")
        current = None if stored is None else calls.decode(stored)
        outcome, call = decide(current, delivery, clock.now, RETENTION)
        emitted = []
        if outcome is Outcome.NEW_VERSION:
            encoded = calls.encode(call)
            state.set("call", encoded)
            emitted.append(encoded)
            progress["versions"] += 1
        now = time.monotonic()
        if not progress["processed"]:
            progress["first"], progress["cpu_first"] = now, time.process_time()
        progress["processed"] += 1
        progress["last"] = now
        if progress["processed"] == expected:
            progress["cpu_last"] = time.process_time()
            app.stop()  # commits the checkpoint (outputs flushed first) and returns from run()
        return emitted

    sdf = app.dataframe(source_topic)
    sdf = sdf.apply(dedupe, stateful=True, expand=True)
    sdf.to_topic(output_topic)
    app.run()
    seconds = progress["last"] - progress["first"]
    report = {
        "processed": progress["processed"],
        "versions": progress["versions"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(progress["cpu_last"] - progress["cpu_first"], 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    Path(env["BENCH_PEER_RESULT"]).write_text(json.dumps(report))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: since its exec, unlike getrusage's ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()

"""Faust's own ceiling, for `make bench-peers`: an agent that only counts `stream.events()`.

Built like the dedupe worker's app (`processors.app`: the same broker settings,
at-least-once, the same commit interval, the faust-streaming fixes applied), so
the figure is what Faust's per-event machinery allows before any work is done.
Once it has counted BENCH_PEER_EXPECTED events it writes BENCH_PEER_RESULT (the
count and the seconds from the first event to the last) and waits to be stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust

from bench.common import peak_rss_mb
from processors import faust_fixes


def main() -> None:
    env = os.environ
    expected = int(env["BENCH_PEER_EXPECTED"])
    faust_fixes.apply()
    app = faust.App(
        env["BENCH_PEER_GROUP"],
        broker=f"kafka://{env['BENCH_PEER_BOOTSTRAP']}",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=2.0,
        datadir=env["BENCH_PEER_STATE_DIR"],
        web_enabled=False,
    )
    source = app.topic(
        env["BENCH_PEER_SOURCE"], key_serializer="raw", value_serializer="raw", internal=False
    )
    progress = {"processed": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}

    @app.agent(source, name="noop")
    async def count(stream: Any) -> None:
        async for _ in stream.events():
            now = time.monotonic()
            if not progress["processed"]:
                progress["first"], progress["cpu_first"] = now, time.process_time()
            progress["processed"] += 1
            progress["last"] = now
            if progress["processed"] == expected:
                progress["cpu_last"] = time.process_time()
                seconds = progress["last"] - progress["first"]
                report = {
                    "processed": expected,
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(progress["cpu_last"] - progress["cpu_first"], 3),
                    "peak_rss_mb": round(peak_rss_mb(os.getpid()), 1),
                }
                # Once, after the last event was timed: the blocking write costs the figure nothing.
                Path(env["BENCH_PEER_RESULT"]).write_text(json.dumps(report))  # noqa: ASYNC240

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.spinner = None  # as processors/worker.py does
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()

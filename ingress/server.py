"""Runs the ingress under uvicorn: `onoff-bridge ingress`.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests
finish; the app's shutdown then flushes the producer, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ingress.bootstrap import build_app
from ingress.metrics import MULTIPROCESS_DIR_ENV
from ingress.settings import IngressSettings
from onoff_bridge.logs import configure_logging

# Young objects the garbage collector lets accumulate before a collection (CPython: 700).
GC_YOUNG_THRESHOLD = 20_000


def app_from_environment() -> Starlette:
    """The factory uvicorn calls in each worker process."""
    settings = IngressSettings()
    configure_logging(settings.log_level, settings.log_json)
    app = build_app(settings)
    tune_garbage_collector()
    return app


def tune_garbage_collector() -> None:
    """Keeps the cyclic garbage collector off the request path; it found nothing to free there.

    With 64 requests in flight, CPython's defaults ran a young collection every ~14
    requests and, every few seconds, a full one through the ~80,000 objects of the
    imports and clients: 11 % of the event loop's samples, and the p99 at full load.
    A request leaves no cyclic garbage (checked with gc.DEBUG_SAVEALL), so: what exists
    once the app is built is frozen (never scanned again), and young collections wait
    for 20,000 objects rather than 700. Measured in benchmarks.md.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def serve(settings: IngressSettings) -> None:
    configure_logging(settings.log_level, settings.log_json)
    # After a graceful shutdown uvicorn restores the previous handlers and raises the signal
    # again, which with the default handlers ends the process with that signal's status.
    # A clean SIGTERM stop exits 0, so the previous handlers do nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    with _shared_metrics(settings.workers):
        _run(settings)


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """Several workers write their Prometheus figures to one directory (see metrics.py).

    prometheus-client chooses where values live when a process imports it, so the
    directory must be in the environment before uvicorn starts the workers. One that
    is already set (by a pod spec, say) is used as it is and left in place.
    """
    if workers == 1 or MULTIPROCESS_DIR_ENV in os.environ:
        yield
        return
    directory = tempfile.mkdtemp(prefix="onoff-ingress-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def _run(settings: IngressSettings) -> None:
    uvicorn.run(
        "ingress.server:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # What "auto" picks when uvicorn[standard] is installed, named so that a missing
        # one fails at start rather than falling back to the pure-Python h11 and asyncio
        # loop (about twice the cost per request).
        http="httptools",
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.delivery_timeout_s) + 5,
        timeout_keep_alive=75,
    )

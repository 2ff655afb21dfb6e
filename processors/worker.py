"""Runs one processor in this process as a Faust worker: `onoff-bridge worker dedupe`.

Faust's Worker handles SIGTERM and SIGINT: it stops the agents, flushes the
producer, commits what was processed and leaves the consumer group.
`worker all` (in `onoff_bridge`) runs one such process per processor.
"""

from __future__ import annotations

from collections.abc import Sequence

import faust

from processors.app import build_app
from processors.settings import ProcessorSettings


def run_worker(settings: ProcessorSettings, names: Sequence[str]) -> None:
    app = build_app(settings, names)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()

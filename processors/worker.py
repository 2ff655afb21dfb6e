"""Runs one processor in this process as a Faust worker: `onoff-bridge worker dedupe`.

Faust's Worker handles SIGTERM and SIGINT: it stops the agents, flushes the
producer, commits what was processed and leaves the consumer group.
`worker all` (in `onoff_bridge`) runs one such process per processor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import faust

from processors import faust_fixes
from processors.app import build_app
from processors.settings import ProcessorSettings


def run_worker(
    settings: ProcessorSettings,
    names: Sequence[str],
    logging_config: Mapping[str, Any] | None = None,
) -> None:
    """`logging_config` (a dictConfig) replaces Faust's own log format, e.g. with JSON lines.

    The entry point runs `processors.preflight.check_worker` first.
    """
    faust_fixes.check_version()
    app = build_app(settings, names)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        logging_config=dict(logging_config) if logging_config is not None else None,
    )
    # At a log level of WARNING or above Faust adds a terminal spinner that sets the root
    # logger to DEBUG, so every debug line is built and handled: during table recovery
    # that is several per changelog record, and it cost most of the restore's time.
    worker.spinner = None
    worker.execute_from_commandline()

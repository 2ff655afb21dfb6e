"""Per-user call metrics per hour and per day: `onoff-bridge worker metrics`.

`processor.py` explains how each call is counted once; `aggregation.py` holds
the pure logic it runs, `windows.py` where a call counts, `api.py` the HTTP
query, `wiring.py` how it is all installed into the Faust app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.context import ProcessorContext


def install(context: ProcessorContext) -> None:
    # Imported on use: processors.settings imports processors.metrics.settings,
    # which runs this file first, before processors.context can be imported.
    from processors.metrics.wiring import install as install_metrics

    install_metrics(context)

"""Recordings processor: stores each recording and voicemail of onoff.calls before it expires.

Modules: `guard` (which URLs and addresses may be fetched), `fetch` (one
download, streamed and hashed, with retries), `storage` (local directory or
S3), `ordering` (concurrency that keeps offsets and per-call order safe),
`processor` (the Faust agent), `errors` (the exception tree), `settings`,
`metrics`, `install` (the wiring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.context import ProcessorContext


def install(context: ProcessorContext) -> None:
    # Imported here: processors.settings imports this package's settings, and the
    # wiring imports processors.context, which imports processors.settings.
    from processors.recordings.install import install as install_recordings

    install_recordings(context)


__all__ = ["install"]

"""What every processor receives when it is installed into the Faust app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from processors.deadletter import DeadLetters
from processors.progress import ProgressTracker
from processors.settings import ProcessorSettings


@dataclass
class ProcessorContext:
    app: faust.App
    settings: ProcessorSettings
    registry: SchemaRegistryClient
    deadletters: DeadLetters
    progress: ProgressTracker
    # Extra web pages a processor serves beside /healthz and /metrics: path -> view.
    # A view is `async def view(web: View, request: Request) -> Response` (faust.web).
    pages: dict[str, Callable[..., Awaitable[Any]]] = field(default_factory=dict)


Installer = Callable[[ProcessorContext], None]

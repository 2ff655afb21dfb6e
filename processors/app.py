"""Builds the Faust app with the processors asked for, their health page and metrics.

Processing guarantee: at_least_once, with every step idempotent. faust's
exactly_once has open reports of duplicates on rebalance and crash
(faust-streaming #517, #323, #177), and a probe here saw tables incremented
twice after a restart; see docs/faust.md.
"""

from __future__ import annotations

import functools
import gc
import importlib
from collections.abc import Sequence
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors import faust_fixes
from processors.context import Installer, ProcessorContext
from processors.deadletter import DeadLetters
from processors.preflight import broker_credentials
from processors.progress import ProgressTracker, RecoveryState
from processors.settings import ProcessorSettings
from processors.topology import app_id as build_app_id
from schemas import AvroCodec, SchemaName, register_all, registry_client

GC_THRESHOLDS = (50_000, 20, 10)
# The metrics worker's young generation: see build_app.
METRICS_YOUNG_GC_THRESHOLD = 500_000

# name -> "module:function" of each processor's installer, imported only when asked for.
PROCESSORS: dict[str, str] = {
    "dedupe": "processors.dedupe:install",
    "recordings": "processors.recordings:install",
    "metrics": "processors.metrics:install",
}


def build_app(settings: ProcessorSettings, names: Sequence[str]) -> faust.App:
    unknown = set(names) - set(PROCESSORS)
    if unknown:
        raise ValueError(f"unknown processor(s): {', '.join(sorted(unknown))}")
    app_id = build_app_id(settings, names)
    faust_fixes.apply()
    # A worker holds hundreds of thousands of long-lived containers (the memory store's
    # calls, Faust's tables), which the default thresholds (700, 10, 10) have the collector
    # scan again and again: folding 200,000 deliveries into memory took 6.0 s of CPU with
    # them, 2.9 s with (50,000, 20, 10). The metrics worker's batches in flight (both
    # agents', with their decoded calls, planned updates and parsed windows) are hundreds
    # of thousands of live objects themselves: at 50,000 every batch set off collections
    # that freed nothing, 4.7 s of its 34.7 s of CPU in bench-metrics against 1.6 s at
    # 500,000 (4,744 -> 5,544 versions/s). The price, paid there only: cyclic garbage
    # (an exception's traceback) lives until the next collection, and a young collection
    # scans up to 500,000 objects (about 0.4 s on 2 vCPUs under a catch-up's heap). The
    # recordings worker, whose failures raise, keeps its memory flat at 50,000 and not at
    # 500,000 (tests/integration/test_recordings_failures.py); dedupe gained 2.6 %.
    young = METRICS_YOUNG_GC_THRESHOLD if "metrics" in names else GC_THRESHOLDS[0]
    gc.set_threshold(young, *GC_THRESHOLDS[1:])
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        broker_credentials=broker_credentials(settings.kafka),
        # Topics are made by `onoff-bridge topics apply` (processors.topology); a worker
        # that declared its own would get Faust's defaults: RF 1, delete policy.
        topic_allow_declare=False,
        topic_replication_factor=settings.topic_replication_factor,
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir / app_id),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_compression_type="lz4",
        # Changelog and output writes batch better; 20 ms measured ~35 % faster than 5 ms.
        producer_linger_ms=20,
        # aiokafka makes a send wait while its partition's batch is full and the one before
        # is still in flight: at the default 16 KiB a dedupe batch waited out a broker round
        # trip every ~50 versions per partition.
        producer_max_batch_size=256 * 1024,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    # Faust's create_event looks the Event class up in the settings for every record
    # (about 2 % of the dedupe worker's main thread); the class does not change.
    event_class: Any = app.conf.Event
    app.create_event = functools.partial(event_class, app)  # type: ignore[method-assign]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = registry_client(settings.registry_connection())
    topics = settings.topics
    progress = ProgressTracker(
        settings.stall_timeout_s, _highwater(app), _committed(app), _recovery(app)
    )
    context = ProcessorContext(
        app=app,
        settings=settings,
        registry=registry,
        deadletters=DeadLetters(
            AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topics.deadletter),
            app.topic(topics.deadletter, key_serializer="raw", value_serializer="raw"),
        ),
        progress=progress,
    )
    for name in names:
        module, _, function = PROCESSORS[name].partition(":")
        installer: Installer = getattr(importlib.import_module(module), function)
        installer(context)

    async def register_schemas() -> None:
        register_all(registry, topics)

    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for tp in kwargs.get("assigned", args[0] if args else ()):
            progress.watch(tp.topic, tp.partition)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for tp in kwargs.get("revoked", args[0] if args else ()):
            progress.forget(tp.topic, tp.partition)

    app.task(register_schemas)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)

    async def healthz(web: Any, request: Any) -> Any:
        report = progress.report()
        # A recovering worker is alive but not ready: 503 keeps it out of readiness until
        # its tables are back; /livez tells a livenessProbe only whether it is stalled.
        return web.json(report, status=200 if report["status"] == "ok" else 503)

    async def livez(web: Any, request: Any) -> Any:
        report = progress.report()
        return web.json(report, status=503 if report["status"] == "stalled" else 200)

    async def metrics(web: Any, request: Any) -> Any:
        progress.report()  # refreshes the lag and idle gauges
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII.
        content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return web.bytes(generate_latest(progress.registry), content_type=content_type)

    for path, view in {
        "/healthz": healthz,
        "/livez": livez,
        "/metrics": metrics,
        **context.pages,
    }.items():
        app.page(path)(view)
    return app


def _committed(app: faust.App) -> Any:
    def committed(topic: str, partition: int) -> int | None:
        # Faust keeps the offsets it committed or seeked to on assignment; no public API.
        try:
            offset = getattr(app.consumer, "_committed_offset", {}).get(TP(topic, partition))
        except Exception:  # the consumer is not started yet
            return None
        return None if offset is None else int(offset)

    return committed


def _recovery(app: faust.App) -> Any:
    def recovery() -> RecoveryState:
        try:
            faust_recovery = app.tables.recovery  # type: ignore[attr-defined]
            # `completed` is cleared on each rebalance and set once the tables are back;
            # before the first assignment nothing is restored yet either.
            if faust_recovery.completed.is_set() and not faust_recovery.in_recovery:
                return RecoveryState(recovering=False)
            return RecoveryState(True, int(faust_recovery.active_remaining_total()))
        except Exception:  # the table manager is not started yet
            return RecoveryState(recovering=False)

    return recovery


def _highwater(app: faust.App) -> Any:
    def highwater(topic: str, partition: int) -> int | None:
        try:
            return int(app.consumer.highwater(TP(topic, partition)))
        except Exception:  # not assigned, or the consumer is not started yet
            return None

    return highwater

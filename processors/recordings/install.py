"""Wires the recordings processor into the Faust app from the worker's settings."""

from __future__ import annotations

import logging

from processors.context import ProcessorContext
from processors.recordings.archive import RecordingArchiver
from processors.recordings.fetch import RecordingFetcher
from processors.recordings.guard import AddressGuard
from processors.recordings.metrics import RecordingMetrics
from processors.recordings.processor import RecordingsProcessor
from processors.recordings.storage import LocalDirectoryStore, build_store
from schemas import AvroCodec, SchemaName
from schemas.topics import topic_partitions

log = logging.getLogger(__name__)


def install(context: ProcessorContext) -> None:
    settings = context.settings.recordings
    topics = context.settings.topics
    store = build_store(settings)
    if isinstance(store, LocalDirectoryStore):
        # No attempt outlives attempt_timeout_s: older temp files are a crashed worker's.
        removed = store.clean_incoming(older_than_s=settings.attempt_timeout_s)
        if removed:
            log.info("removed %d stale temp files from the recordings spool", removed)
    guard = AddressGuard.build(
        allowed_hosts=settings.allowed_hosts,
        allow_loopback=settings.allow_loopback,
        trusted_endpoints=settings.trusted_endpoints,
        host_overrides=settings.host_overrides,
    )
    processor = RecordingsProcessor(
        context.app,
        settings=settings,
        calls_topic=topics.calls,
        recordings_topic=topics.recordings,
        partitions=topic_partitions(context.settings.kafka_config(), topics.calls),
        calls=AvroCodec(context.registry, SchemaName.CALL, topics.calls),
        recordings=AvroCodec(context.registry, SchemaName.RECORDING, topics.recordings),
        deadletters=context.deadletters,
        progress=context.progress,
        metrics=RecordingMetrics(context.progress.registry),
        archiver=RecordingArchiver(settings, RecordingFetcher(settings, guard), store),
    )
    context.progress.source_topics.add(topics.calls)

    async def expire() -> None:
        forgotten = processor.expire()
        if forgotten:
            log.info("forgot %d calls past the recordings retention", forgotten)

    context.app.timer(settings.expiry_interval_s)(expire)

"""Installs the metrics processor into the Faust app: topics, codecs, tables, page, timer."""

from __future__ import annotations

import logging
from typing import Any

from processors.context import ProcessorContext
from processors.metrics.aggregation import CALL_FIELDS
from processors.metrics.api import PATH, metrics_view
from processors.metrics.processor import MetricsProcessor
from processors.topology import contributions_topic
from processors.version_producer import producer_settings
from schemas import AvroCodec, SchemaName
from schemas.topics import topic_partitions

log = logging.getLogger(__name__)


def install(context: ProcessorContext) -> None:
    topics = context.settings.topics
    settings = context.settings.metrics
    if any(t.changelog_topic.get_topic_name() == topics.calls for t in context.app.tables.values()):
        # Seen in a test run: with dedupe in the same app, onoff.calls is also a table
        # changelog to Faust, and the metrics missed versions without any error.
        # `worker all` runs each processor in its own process for that reason.
        raise RuntimeError(f"metrics cannot share a Faust app with dedupe ({topics.calls})")
    kafka = context.settings.kafka_config()
    metrics_codec = AvroCodec(
        context.registry, SchemaName.USER_CALL_METRICS, topics.user_call_metrics
    )
    processor = MetricsProcessor(
        context.app,
        settings,
        calls_topic=topics.calls,
        # Faust requires the calls table's changelog to match its source topic's partitions.
        calls_partitions=topic_partitions(kafka, topics.calls),
        # The topic's own count (preflight found it), as the producer would place by it.
        contributions_partitions=topic_partitions(kafka, contributions_topic(context.app.conf.id)),
        metrics_topic=topics.user_call_metrics,
        calls_codec=AvroCodec(context.registry, SchemaName.CALL, topics.calls, CALL_FIELDS),
        metrics_codec=metrics_codec,
        deadletters=context.deadletters,
        progress=context.progress,
        producer_settings=producer_settings(kafka),
    )
    context.progress.source_topics.update({topics.calls, processor.contributions.get_topic_name()})
    context.pages[PATH] = metrics_view(processor, settings.max_query_windows)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends this after the batches in hand were processed and the producer flushed.
        processor.calls_rows.forget()
        processor.windows_rows.forget()

    context.app.on_partitions_revoked.connect(on_revoked)

    async def expire() -> None:
        windows, calls = processor.expire()
        if windows or calls:
            log.info("expired %d windows and %d calls past the metrics retention", windows, calls)

    context.app.timer(settings.expiry_interval_s)(expire)

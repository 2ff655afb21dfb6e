"""Installs the metrics processor into the Faust app: topics, codecs, tables, page, timer."""

from __future__ import annotations

import logging

from processors.codecs import register_avro
from processors.context import ProcessorContext
from processors.metrics.api import PATH, metrics_view
from processors.metrics.processor import MetricsProcessor
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
    metrics_codec = register_avro(
        f"avro:{topics.user_call_metrics}",
        AvroCodec(context.registry, SchemaName.USER_CALL_METRICS, topics.user_call_metrics),
    )
    processor = MetricsProcessor(
        context.app,
        settings,
        calls_topic=topics.calls,
        # Faust requires the calls table's changelog to match its source topic's partitions.
        calls_partitions=topic_partitions(context.settings.kafka_config(), topics.calls),
        metrics_topic=topics.user_call_metrics,
        calls_codec=AvroCodec(context.registry, SchemaName.CALL, topics.calls),
        metrics_codec_name=metrics_codec,
        deadletters=context.deadletters,
        progress=context.progress,
    )
    context.progress.source_topics.update({topics.calls, processor.contributions.get_topic_name()})
    context.pages[PATH] = metrics_view(processor, settings.max_query_windows)

    async def expire() -> None:
        windows, calls = processor.expire()
        if windows or calls:
            log.info("expired %d windows and %d calls past the metrics retention", windows, calls)

    context.app.timer(settings.expiry_interval_s)(expire)

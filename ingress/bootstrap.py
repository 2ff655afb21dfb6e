"""Wiring: builds the ingress's clients from its settings, in one place."""

from __future__ import annotations

import logging
import threading

from confluent_kafka.schema_registry import SchemaRegistryClient
from starlette.applications import Starlette

from ingress.app import CDR_PATH, SMS_PATH, IngressComponents, WebhookRoute, create_app
from ingress.auth import ApiKeyAuthenticator
from ingress.metrics import IngressMetrics
from ingress.publisher import KafkaPublisher, producer_config
from ingress.settings import IngressSettings
from ingress.webhooks import CALL_FIELDS, SMS_FIELDS
from schemas import AvroCodec, RegistryUnavailableError, SchemaName, register_all, registry_client
from schemas.preflight import check_kafka, check_registry
from schemas.settings import TopicNames

log = logging.getLogger(__name__)


class SchemaRegistration:
    """Registers the schemas once; until that succeeds, `ready()` tries again."""

    def __init__(self, client: SchemaRegistryClient, topics: TopicNames) -> None:
        self._client = client
        self._topics = topics
        self._done = False
        self._lock = threading.Lock()

    def ready(self) -> bool:
        with self._lock:
            if not self._done:
                try:
                    ids = register_all(self._client, self._topics)
                except RegistryUnavailableError as exc:
                    log.warning("schemas not registered yet", extra={"error": str(exc)})
                    return False
                log.info("schemas registered", extra={"schema_ids": ids})
                self._done = True
            return True


def check_connections(settings: IngressSettings) -> None:
    """Kafka and the registry accept the ingress's credentials; else a `SchemaError` says why.

    Run once before serving, so a wrong password is one line at start-up, not a
    /readyz that never turns green.
    """
    check_kafka(settings.kafka_config(), settings.connect_timeout_s)
    check_registry(settings.registry_connection(), settings.connect_timeout_s)


def build_app(settings: IngressSettings) -> Starlette:
    topics = settings.topics
    registry = registry_client(settings.registry_connection())
    publisher = KafkaPublisher(
        producer_config(
            settings.kafka_config(),
            settings.message_timeout_ms,
            linger_ms=settings.producer_linger_ms,
            compression=settings.producer_compression,
            queue_max_messages=settings.producer_queue_max_messages,
            extra=settings.producer_config,
        ),
        settings.delivery_timeout_s,
    )
    registration = SchemaRegistration(registry, topics)
    keys = settings.named_api_keys()

    def on_startup() -> None:
        publisher.start()
        if not keys:
            log.warning(
                "AUTHENTICATION IS OFF: anyone who can reach this port can write to Kafka "
                "(ONOFF_BRIDGE_ALLOW_UNAUTHENTICATED=true)"
            )
        registration.ready()

    def on_shutdown() -> None:
        publisher.close()
        registry.close()

    components = IngressComponents(
        publisher=publisher,
        authenticator=ApiKeyAuthenticator(keys, settings.allow_unauthenticated),
        routes=(
            WebhookRoute(
                CDR_PATH,
                topics.cdr_raw,
                AvroCodec(registry, SchemaName.CALL_EVENT, topics.cdr_raw),
                CALL_FIELDS,
            ),
            WebhookRoute(
                SMS_PATH,
                topics.sms_raw,
                AvroCodec(registry, SchemaName.SMS_EVENT, topics.sms_raw),
                SMS_FIELDS,
            ),
        ),
        deadletter_topic=topics.deadletter,
        deadletter_encoder=AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topics.deadletter),
        max_body_bytes=settings.max_body_bytes,
        retry_after_s=settings.retry_after_s,
        quarantine_status=settings.quarantine_status,
        schemas_ready=registration.ready,
        metrics=IngressMetrics(publisher.queue_depth),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    return create_app(components)

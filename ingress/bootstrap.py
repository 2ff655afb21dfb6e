"""Wiring: builds the ingress's clients from its settings, in one place."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka.schema_registry import SchemaRegistryClient
from starlette.applications import Starlette
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential,
)

from ingress.app import IngressComponents, create_app
from ingress.auth import ApiKeyAuthenticator
from ingress.forwarder import SpoolForwarder
from ingress.metrics import IngressMetrics
from ingress.publisher import KafkaPublisher, producer_config
from ingress.routes import CDR_PATH, SMS_PATH, WebhookRoute
from ingress.settings import IngressSettings
from ingress.webhooks import CALL_FIELDS, SMS_FIELDS
from schemas import (
    AvroCodec,
    KafkaUnavailableError,
    RegistryUnavailableError,
    SchemaName,
    register_all,
    registry_client,
)
from schemas.preflight import check_kafka, check_registry
from schemas.settings import TopicNames

log = logging.getLogger(__name__)

REGISTRATION_RETRY_START_S = 0.2
REGISTRATION_RETRY_MAX_S = 5.0


class SchemaRegistration:
    """Registers the schemas in a background thread, retrying until the registry answers.

    The first request must not register on the event loop: with the registry down
    that blocks every other request for the client's whole timeout. Until the thread
    succeeds, `ready()` is False, and webhooks get 503 + Retry-After (with the spool
    on: 200, their records spooled until it succeeds).
    """

    def __init__(
        self, client: SchemaRegistryClient, topics: TopicNames, codecs: Sequence[AvroCodec]
    ) -> None:
        self._client = client
        self._topics = topics
        self._codecs = tuple(codecs)
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._register, name="schema-registration", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def ready(self) -> bool:
        return self._done.is_set()

    def _register(self) -> None:
        try:
            self._register_retrying()
        except RetryError:  # stopped before the registry answered
            return
        self._done.set()

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a shutdown ends the wait at once

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("schemas not registered yet, retrying", extra={"error": str(error)})

    def _register_retrying(self) -> None:
        for attempt in Retrying(
            retry=retry_if_exception_type(RegistryUnavailableError),
            wait=wait_exponential(
                multiplier=REGISTRATION_RETRY_START_S, max=REGISTRATION_RETRY_MAX_S
            ),
            stop=stop_when_event_set(self._stopping),
            sleep=self._pause,
            before_sleep=self._log_retry,
        ):
            with attempt:
                ids = register_all(self._client, self._topics)
                # Each codec caches its id now, so no request ever asks the registry.
                for codec in self._codecs:
                    codec.schema_id()
        log.info("schemas registered", extra={"schema_ids": ids})


def check_connections(settings: IngressSettings) -> None:
    """Kafka and the registry accept the ingress's credentials; else a `SchemaError` says why.

    Run once before serving, so a wrong password is one line at start-up, not a
    /readyz that never turns green. With the spool on, a Kafka or registry that does
    not answer is no reason to stay down (the spool keeps what arrives meanwhile,
    and the records of a crashed run wait to drain), so only a refusal stops it.
    """
    for check in (
        lambda: check_kafka(settings.kafka_config(), settings.connect_timeout_s),
        lambda: check_registry(settings.registry_connection(), settings.connect_timeout_s),
    ):
        try:
            check()
        except (KafkaUnavailableError, RegistryUnavailableError) as exc:
            if not settings.spool_enabled:
                raise
            log.warning("starting anyway, the spool keeps deliveries", extra={"error": str(exc)})


def webhook_routes(registry: SchemaRegistryClient, topics: TopicNames) -> tuple[WebhookRoute, ...]:
    """The routes the ingress serves; `onoff-bridge deadletter replay` judges bodies with them."""
    return (
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
    )


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
    routes = webhook_routes(registry, topics)
    deadletter_codec = AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topics.deadletter)
    codecs = [route.encoder for route in routes if isinstance(route.encoder, AvroCodec)]
    registration = SchemaRegistration(registry, topics, (*codecs, deadletter_codec))
    keys = settings.named_api_keys()
    metrics = IngressMetrics(publisher.queue_depth)
    spool = None
    if settings.spool_enabled:
        spool = SpoolForwarder(
            settings.spool_directory,
            publisher.publish,
            {codec.name: codec for codec in (*codecs, deadletter_codec)},
            registration.ready,
            metrics,
            max_bytes=settings.spool_max_bytes,
            segment_bytes=settings.spool_segment_bytes,
            drain_batch=settings.spool_drain_batch,
            shutdown_drain_s=settings.spool_shutdown_drain_s,
        )

    def on_startup() -> None:
        publisher.start()
        if not keys:
            log.warning(
                "AUTHENTICATION IS OFF: anyone who can reach this port can write to Kafka "
                "(ONOFF_BRIDGE_ALLOW_UNAUTHENTICATED=true)"
            )
        registration.start()

    def on_shutdown() -> None:
        registration.stop()
        publisher.close()
        registry.close()

    components = IngressComponents(
        publisher=publisher,
        authenticator=ApiKeyAuthenticator(keys, settings.allow_unauthenticated),
        routes=routes,
        deadletter_topic=topics.deadletter,
        deadletter_encoder=deadletter_codec,
        max_body_bytes=settings.max_body_bytes,
        oversized_drain_bytes=settings.oversized_drain_bytes,
        retry_after_s=settings.retry_after_s,
        quarantine_status=settings.quarantine_status,
        schemas_ready=registration.ready,
        metrics=metrics,
        spool=spool,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    return create_app(components)

"""The Starlette application: webhook routes, health, metrics, and the error-to-status table."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingress.auth import ApiKeyAuthenticator
from ingress.errors import (
    AuthenticationError,
    IngressError,
    PayloadRejectedError,
    PayloadTooLargeError,
    PublishError,
)
from ingress.forwarder import AVRO, SpoolForwarder
from ingress.metrics import IngressMetrics
from ingress.openapi import openapi_document
from ingress.publisher import DeliveryReceipt
from ingress.redaction import redact_reason
from ingress.routes import CDR_PATH, SMS_PATH, Encoder, WebhookRoute
from ingress.webhooks import IngestMetadata
from onoff_bridge.logs import request_id_var
from schemas import SchemaError

log = logging.getLogger(__name__)

# Re-exported: the routes lived here before ingress.routes.
__all__ = ["CDR_PATH", "SMS_PATH", "IngressComponents", "WebhookRoute", "create_app"]

_KEPT_HEADERS = ("content-type", "content-length", "user-agent", "x-forwarded-for", "x-request-id")
_READ_HEADERS = {
    name.encode(): name for name in ("x-api-key", "authorization", "content-length", "x-request-id")
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_MAX_REASON = 1000
_ACCEPTED = b"{}"


class Publisher(Protocol):
    async def publish(self, topic: str, key: str, value: bytes) -> DeliveryReceipt: ...

    def queue_depth(self) -> int: ...

    def reachable(self, topic: str, timeout_s: float = 2.0) -> bool: ...


@dataclass(frozen=True)
class IngressComponents:
    """Everything the app needs, built by `ingress.bootstrap` (or by a test)."""

    publisher: Publisher
    authenticator: ApiKeyAuthenticator
    routes: tuple[WebhookRoute, ...]
    deadletter_topic: str
    deadletter_encoder: Encoder
    max_body_bytes: int
    retry_after_s: int
    quarantine_status: int
    schemas_ready: Callable[[], bool]
    metrics: IngressMetrics
    oversized_drain_bytes: int = 4 * 1024 * 1024
    # With the spool on, what Kafka or the registry cannot take in time waits here.
    spool: SpoolForwarder | None = None
    on_startup: Callable[[], None] = lambda: None
    on_shutdown: Callable[[], None] = lambda: None


def create_app(components: IngressComponents) -> Starlette:
    c = components
    spool = c.spool
    publisher = c.publisher
    metrics = c.metrics

    def webhook_endpoint(route: WebhookRoute) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            headers = _read_headers(request.scope["headers"])
            request_id = _request_id(headers.get("x-request-id"))
            token = request_id_var.set(request_id)
            try:
                response = await _accept(request, headers, route, request_id)
            except IngressError as exc:
                response = _error_response(exc, c, route.path)
            except ClientDisconnect:
                response = JSONResponse({"error": "client disconnected"}, status_code=400)
            except Exception as exc:  # a bug must still not lose the event: 503 makes Onoff retry
                log.exception("unexpected error", extra={"route": route.path})
                response = _error_response(
                    PublishError(f"internal error: {type(exc).__name__}"), c, route.path
                )
            finally:
                request_id_var.reset(token)
            # No response sets it before: appended raw, without MutableHeaders' search.
            response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
            metrics.request(route.path, response.status_code, time.perf_counter() - started)
            return response

        return endpoint

    async def _accept(
        request: Request, headers: Mapping[str, str], route: WebhookRoute, request_id: str
    ) -> Response:
        try:
            key_name = c.authenticator.authenticate(headers)
        except AuthenticationError:
            metrics.auth_failures.labels(route.path).inc()
            raise
        body = await _read_body(
            request, headers.get("content-length"), c.max_body_bytes, c.oversized_drain_bytes
        )
        # Registration runs in the background (bootstrap); encoding now would ask the
        # registry on the event loop. Without the spool neither topic can be written yet
        # (retry later); with it, the Avro body waits there for its schema id.
        ready = c.schemas_ready()
        if not ready and spool is None:
            raise PublishError("schemas not registered yet")
        meta = IngestMetadata(datetime.now(UTC), request_id, key_name, route.path)
        try:
            # Until the registry has given the schemas their ids, a body waits in the
            # spool unframed (checked against the schema all the same).
            parsed = route.accept(body, meta, framed=ready)
        except PayloadRejectedError as exc:
            return await _quarantine(request, route, body, meta, exc.reason)
        except SchemaError as exc:
            raise PublishError(str(exc)) from exc
        receipt: DeliveryReceipt | None
        if spool is None:
            # `_publish` inlined: this is nearly every request, and an await less counts.
            produce_started = time.perf_counter()
            receipt = await publisher.publish(route.topic, parsed.key, parsed.value)
            metrics.acknowledged(route.topic, time.perf_counter() - produce_started)
        else:
            receipt = await _store(route.topic, parsed.key, parsed.value, parsed.value_format)
        if receipt is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "accepted",
                extra={
                    "topic": receipt.topic,
                    "partition": receipt.partition,
                    "offset": receipt.offset,
                    "key": parsed.key,
                },
            )
        return Response(_ACCEPTED, media_type="application/json")

    async def _store(
        topic: str, key: str, value: bytes, value_format: str
    ) -> DeliveryReceipt | None:
        """Kafka's receipt; None when the record went to the spool (fsynced) instead.

        While the spool holds records, new ones join them rather than overtake them,
        so a call's deliveries reach Kafka in the order they were answered.
        """
        if spool is None:
            return await _publish(topic, key, value)
        if value_format != AVRO:
            await spool.append(topic, key, value, value_format, "registry")
            return None
        if spool.holding:
            await spool.append(topic, key, value, value_format, "backlog")
            return None
        try:
            return await _publish(topic, key, value)
        except PublishError as exc:
            if not exc.transient:
                raise
            log.info("Kafka did not take it in time: spooled", extra={"error": str(exc)})
            await spool.append(topic, key, value, value_format, "kafka")
            return None

    async def _publish(topic: str, key: str, value: bytes) -> DeliveryReceipt:
        produce_started = time.perf_counter()
        receipt = await publisher.publish(topic, key, value)
        metrics.acknowledged(topic, time.perf_counter() - produce_started)
        return receipt

    async def _quarantine(
        request: Request, route: WebhookRoute, body: bytes, meta: IngestMetadata, reason: str
    ) -> Response:
        reason = reason[:_MAX_REASON]
        record = {
            "requestId": meta.request_id,
            "receivedAt": meta.received_at,
            "source": "ingress",
            "path": route.path,
            "reason": reason,
            "body": body,
            "contentType": request.headers.get("content-type"),
            "headers": {h: request.headers[h] for h in _KEPT_HEADERS if h in request.headers},
            "apiKeyName": meta.api_key_name,
            "sourcePartition": None,
            "sourceOffset": None,
        }
        encoder = c.deadletter_encoder
        try:
            if c.schemas_ready():
                value, value_format = encoder.encode(record), AVRO
            else:  # only with the spool on: `_accept` answers 503 otherwise
                value, value_format = encoder.encode_body(record), encoder.name
        except SchemaError as exc:
            raise PublishError(f"cannot quarantine: {exc}") from exc
        receipt = await _store(c.deadletter_topic, meta.request_id, value, value_format)
        metrics.quarantined.labels(route.path).inc()
        where = (
            {}
            if receipt is None
            else {
                "topic": receipt.topic,
                "partition": receipt.partition,
                "offset": receipt.offset,
            }
        )
        log.warning(
            "quarantined",
            extra={"route": route.path, "reason": redact_reason(reason), "spooled": receipt is None}
            | where,
        )
        return JSONResponse(
            {"status": "quarantined", "reason": reason}, status_code=c.quarantine_status
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        """200 while webhooks get 200s: "ready", or "degraded" while the spool stands in.

        A spooling ingress still stores what it is sent, so it stays behind its
        Service: were every pod taken out during a Kafka outage, the sender would get
        connection errors instead of 200s. It answers 503 when it cannot store a
        delivery: Kafka or the registry away without a spool, or the spool full.
        """
        kafka = await asyncio.to_thread(c.publisher.reachable, c.routes[0].topic, 2.0)
        schemas = await asyncio.to_thread(c.schemas_ready)
        body: dict[str, Any] = {"kafka": kafka, "schemas": schemas}
        healthy = kafka and schemas
        if spool is not None:
            status = spool.status()
            body["spool"] = {
                "records": status.records,
                "bytes": status.bytes,
                "capacity_bytes": status.capacity_bytes,
                "oldest_age_s": round(status.oldest_age_s, 3),
                "full": status.full,
            }
            if status.full:
                healthy = False
            elif not healthy or status.records:
                return JSONResponse({"status": "degraded", **body})
        if healthy:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse(
            {"status": "not ready", **body},
            status_code=503,
            headers={"Retry-After": str(c.retry_after_s)},
        )

    async def scrape(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(c.max_body_bytes))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        c.on_startup()
        try:
            if spool is not None:
                await spool.start()  # after the publisher's start: the drain sends through it
            try:
                yield
            finally:
                if spool is not None:
                    await spool.stop()  # before the publisher's close, for the same reason
        finally:
            c.on_shutdown()
            metrics.close()

    routes = [Route(r.path, webhook_endpoint(r), methods=["POST"], name=r.path) for r in c.routes]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _read_body(request: Request, declared: str | None, limit: int, drain: int) -> bytes:
    """Reads at most `limit` bytes; refuses a larger body, after discarding up to `drain` more.

    A client that sends its whole body before reading gets a broken pipe if the
    server answers and closes while the body is still arriving. Like nginx's
    lingering close, the rest of an oversized body is read and thrown away, up to
    `drain` bytes, so the client reads the 413; beyond that the connection is dropped.

    It reads the ASGI messages as `Request.stream` does, without its async generator.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit + drain:
        raise PayloadTooLargeError(limit)
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit + drain:
            break
        if size <= limit:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise PayloadTooLargeError(limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers the handler reads, in one pass; the first of a repeated one.

    `request.headers` would do, at the cost of a search through every header per lookup.
    ASGI servers give header names lowercased.
    """
    found: dict[str, str] = {}
    for name, value in raw:
        wanted = _READ_HEADERS.get(name)
        if wanted is not None and wanted not in found:
            found[wanted] = value.decode("latin-1")
    return found


def _request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()


def _error_response(exc: IngressError, c: IngressComponents, route: str) -> Response:
    """The one table from error to answer."""
    if isinstance(exc, AuthenticationError):
        return JSONResponse(
            {"error": str(exc)},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="onoff"'},
        )
    if isinstance(exc, PayloadTooLargeError):
        return JSONResponse({"error": str(exc)}, status_code=413)
    # PublishError, and any IngressError without a row of its own: not stored, so retry.
    c.metrics.publish_failures.labels(route).inc()
    log.warning("not stored, asking the sender to retry", extra={"route": route, "error": str(exc)})
    return JSONResponse(
        {"error": "temporarily unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(c.retry_after_s)},
    )

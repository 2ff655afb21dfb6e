"""The Starlette application: webhook routes, health, metrics, and the error-to-status table."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
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
    on_startup: Callable[[], None] = lambda: None
    on_shutdown: Callable[[], None] = lambda: None


def create_app(components: IngressComponents) -> Starlette:
    c = components

    async def handle(request: Request, route: WebhookRoute) -> Response:
        started = time.perf_counter()
        request_id = _request_id(request)
        token = request_id_var.set(request_id)
        try:
            response = await _accept(request, route, request_id)
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
        response.headers["x-request-id"] = request_id
        c.metrics.request(route.path, response.status_code, time.perf_counter() - started)
        return response

    async def _accept(request: Request, route: WebhookRoute, request_id: str) -> Response:
        try:
            key_name = c.authenticator.authenticate(request.headers)
        except AuthenticationError:
            c.metrics.auth_failures.labels(route.path).inc()
            raise
        body = await _read_body(request, c.max_body_bytes, c.oversized_drain_bytes)
        if not c.schemas_ready():
            # Registration runs in the background (bootstrap); encoding now would ask the
            # registry on the event loop. Neither topic can be written yet: retry later.
            raise PublishError("schemas not registered yet")
        meta = IngestMetadata(datetime.now(UTC), request_id, key_name, route.path)
        try:
            parsed = route.accept(body, meta)
        except PayloadRejectedError as exc:
            return await _quarantine(request, route, body, meta, exc.reason)
        except SchemaError as exc:
            raise PublishError(str(exc)) from exc
        receipt = await _publish(route.topic, parsed.key, parsed.value)
        c.metrics.stored(route.topic)
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

    async def _publish(topic: str, key: str, value: bytes) -> DeliveryReceipt:
        produce_started = time.perf_counter()
        receipt = await c.publisher.publish(topic, key, value)
        c.metrics.produced(topic, time.perf_counter() - produce_started)
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
        try:
            value = c.deadletter_encoder.encode(record)
        except SchemaError as exc:
            raise PublishError(f"cannot quarantine: {exc}") from exc
        receipt = await _publish(c.deadletter_topic, meta.request_id, value)
        c.metrics.quarantined.labels(route.path).inc()
        log.warning(
            "quarantined",
            extra={
                "route": route.path,
                "reason": redact_reason(reason),
                "topic": receipt.topic,
                "partition": receipt.partition,
                "offset": receipt.offset,
            },
        )
        return JSONResponse(
            {"status": "quarantined", "reason": reason}, status_code=c.quarantine_status
        )

    def webhook_endpoint(route: WebhookRoute) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await handle(request, route)

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        kafka = await asyncio.to_thread(c.publisher.reachable, c.routes[0].topic, 2.0)
        schemas = await asyncio.to_thread(c.schemas_ready)
        body = {
            "status": "ready" if kafka and schemas else "not ready",
            "kafka": kafka,
            "schemas": schemas,
        }
        if kafka and schemas:
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(c.retry_after_s)})

    async def metrics(request: Request) -> Response:
        return Response(c.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(c.max_body_bytes))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        c.on_startup()
        try:
            yield
        finally:
            c.on_shutdown()
            c.metrics.close()

    routes = [Route(r.path, webhook_endpoint(r), methods=["POST"], name=r.path) for r in c.routes]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _read_body(request: Request, limit: int, drain: int) -> bytes:
    """Reads at most `limit` bytes; refuses a larger body, after discarding up to `drain` more.

    A client that sends its whole body before reading gets a broken pipe if the
    server answers and closes while the body is still arriving. Like nginx's
    lingering close, the rest of an oversized body is read and thrown away, up to
    `drain` bytes, so the client reads the 413; beyond that the connection is dropped.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + drain:
        raise PayloadTooLargeError(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + drain:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise PayloadTooLargeError(limit)
    return b"".join(chunks)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else os.urandom(16).hex()


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

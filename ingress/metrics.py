"""The ingress's Prometheus metrics, in a registry of their own (one per app).

With `--workers N` the processes share nothing, and a scrape reaches one of
them. `server.py` then points PROMETHEUS_MULTIPROC_DIR at a directory before
the workers start: each process writes its values there, and a scrape of any
one of them adds up all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# records, bytes, capacity in bytes, age of the oldest record in seconds
SpoolFigures = tuple[int, int, int, float]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngressMetrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.multiprocess = MULTIPROCESS_DIR_ENV in os.environ
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onoff_ingress_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "onoff_ingress_accepted",
            "Deliveries acknowledged by Kafka",
            ["topic"],
            registry=self.registry,
        )
        self.quarantined = Counter(
            "onoff_ingress_quarantined",
            "Deliveries sent to the dead-letter topic",
            ["route"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "onoff_ingress_auth_failures",
            "Requests refused for a missing or wrong API key",
            ["route"],
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "onoff_ingress_publish_failures",
            "Deliveries answered 503 because Kafka or the registry did not take them",
            ["route"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "onoff_ingress_request_seconds",
            "Request latency, body read to answer",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.produce_latency = Histogram(
            "onoff_ingress_produce_seconds",
            "Time from produce to the broker's acknowledgement",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue = Gauge(
            "onoff_ingress_producer_queue_depth",
            "Messages waiting in the producer's local queue",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._queue_depth = queue_depth
        if not self.multiprocess:
            self._queue.set_function(lambda: float(queue_depth()))
        # The spool (ingress/forwarder.py); all zero while it is off.
        self.spooled = Counter(
            "onoff_ingress_spooled",
            "Deliveries answered 200 from the spool, by why Kafka did not take them at once",
            ["topic", "reason"],
            registry=self.registry,
        )
        self.spool_drained = Counter(
            "onoff_ingress_spool_drained",
            "Spooled records acknowledged by Kafka and removed from the spool",
            registry=self.registry,
        )
        self._spool_records = Gauge(
            "onoff_ingress_spool_records",
            "Records in the spool not yet acknowledged by Kafka",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._spool_bytes = Gauge(
            "onoff_ingress_spool_bytes",
            "Bytes the spool's segments take on disk",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._spool_capacity = Gauge(
            "onoff_ingress_spool_capacity_bytes",
            "The spool's size cap (ONOFF_BRIDGE_SPOOL_MAX_BYTES); 0 when the spool is off",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._spool_oldest = Gauge(
            "onoff_ingress_spool_oldest_age_seconds",
            "How long the oldest record in the spool has waited; 0 when it is empty",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self._spool_status: Callable[[], SpoolFigures] | None = None
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._produce_children: dict[str, tuple[Any, Any]] = {}

    # Labelled children looked up once: prometheus-client's labels() costs ~2 µs a call,
    # about 1 % of a request each, and the label values here are a handful of routes.
    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, str(status)),
                self.request_latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def acknowledged(self, topic: str, seconds: float) -> None:
        """Kafka has the record, `seconds` after it was produced."""
        children = self._produce_children.get(topic)
        if children is None:
            children = self._produce_children[topic] = (
                self.accepted.labels(topic),
                self.produce_latency.labels(topic),
            )
        children[0].inc()
        children[1].observe(seconds)
        if self.multiprocess:
            # A function gauge would be read by the scraped process alone: each process
            # publishes its own queue depth as it goes instead.
            self._queue.set(self._queue_depth())

    def watch_spool(self, status: Callable[[], SpoolFigures]) -> None:
        """Reads the spool's gauges from `status`: at each scrape, or at `refresh_spool`."""
        self._spool_status = status
        if not self.multiprocess:
            for index, gauge in enumerate(self._spool_gauges()):
                gauge.set_function(_figure(status, index))

    def refresh_spool(self) -> None:
        """With several workers, writes this process's spool gauges for the others' scrapes."""
        if self.multiprocess and self._spool_status is not None:
            for gauge, value in zip(self._spool_gauges(), self._spool_status(), strict=True):
                gauge.set(value)

    def _spool_gauges(self) -> tuple[Gauge, Gauge, Gauge, Gauge]:
        return self._spool_records, self._spool_bytes, self._spool_capacity, self._spool_oldest

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's figures, or every worker's added up."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """Drops this process's live gauges from the shared figures when it stops."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _figure(status: Callable[[], SpoolFigures], index: int) -> Callable[[], float]:
    return lambda: float(status()[index])

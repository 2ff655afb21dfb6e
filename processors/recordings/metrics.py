"""Prometheus metrics of the recordings processor, on the worker's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.downloads = Counter(
            "onoff_recordings_downloads",
            "Recording links handled, by final status (stored, expired, rejected, failed)",
            ["status"],
            registry=registry,
        )
        self.bytes = Counter(
            "onoff_recordings_stored_bytes",
            "Bytes of audio stored",
            registry=registry,
        )
        self.duration = Histogram(
            "onoff_recordings_download_seconds",
            "Time from the first attempt to the final status of one link, retries included",
            ["status"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=registry,
        )
        self.in_flight = Gauge(
            "onoff_recordings_in_flight",
            "Downloads running now",
            registry=registry,
        )
        self.pending_calls = Gauge(
            "onoff_recordings_pending_calls",
            "Call versions read but not finished (their offsets not yet committable)",
            registry=registry,
        )
        self.handled_calls = Gauge(
            "onoff_recordings_handled_calls",
            "Calls in the table of handled links (forgotten after the retention)",
            registry=registry,
        )
        self.queued_acks = Gauge(
            "onoff_recordings_queued_acks",
            "Call versions waiting for their offset to be acked in order (bounded after failures)",
            registry=registry,
        )

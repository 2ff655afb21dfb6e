"""What a worker has done lately, so a silently stalled consumer is seen and restarted.

Faust consumers can stop fetching after a rebalance or a broker outage without
crashing (faust-streaming #175, #640). Each processed record updates this
tracker; `/healthz` turns "records are waiting but nothing moved for
stall_timeout_s" into a 503, and Prometheus gets the same figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class PartitionProgress:
    offset: int = -1
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RecoveryState:
    """Faust's table recovery as `/healthz` sees it: `remaining` changelog records."""

    recovering: bool
    remaining: int = 0


def health_status(
    recovery: RecoveryState,
    recovery_idle_s: float,
    any_partition_stalled: bool,
    stall_timeout_s: float,
) -> str:
    """ "recovering" while tables are restored and the restore moves; "stalled" when the
    restore or the processing made no progress for stall_timeout_s; else "ok".

    Stream partitions are paused during recovery, so their lag is not a stall then.
    """
    if recovery.recovering:
        return "stalled" if recovery_idle_s > stall_timeout_s else "recovering"
    return "stalled" if any_partition_stalled else "ok"


class ProgressTracker:
    def __init__(
        self,
        stall_timeout_s: float,
        highwater: Callable[[str, int], int | None],
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        recovery: Callable[[], RecoveryState] = lambda: RecoveryState(recovering=False),
    ) -> None:
        self.registry = CollectorRegistry()
        # Topics whose partitions a processor consumes; changelogs are not progress.
        self.source_topics: set[str] = set()
        self._stall_timeout_s = stall_timeout_s
        self._highwater = highwater
        # Where the group stands on a partition this worker has not read from yet:
        # after a restart or rebalance, everything up to there was processed before.
        self._committed = committed
        self._partitions: dict[tuple[str, int], PartitionProgress] = {}
        self._recovery = recovery
        # The last remaining-count seen and when it last changed.
        self._recovery_progress: tuple[int, float] | None = None
        self.records = Counter(
            "onoff_processor_records",
            "Records handled, by processor and outcome",
            ["processor", "outcome"],
            registry=self.registry,
        )
        # Children looked up once: `labels()` costs more than the increment itself.
        self._records_by_outcome: dict[tuple[str, str], Any] = {}
        self._offset = Gauge(
            "onoff_processor_last_offset",
            "Offset of the last record processed",
            ["topic", "partition"],
            registry=self.registry,
        )
        self._lag = Gauge(
            "onoff_processor_lag",
            "Records waiting after the last one processed",
            ["topic", "partition"],
            registry=self.registry,
        )
        self._idle = Gauge(
            "onoff_processor_seconds_since_progress",
            "Seconds since the last record processed",
            ["topic", "partition"],
            registry=self.registry,
        )

    def processed(
        self, processor: str, outcome: str, topic: str, partition: int, offset: int
    ) -> None:
        self.processed_batch(processor, {outcome: 1}, {(topic, partition): offset})

    def processed_batch(
        self,
        processor: str,
        outcomes: Mapping[str, int],
        last_offsets: Mapping[tuple[str, int], int],
    ) -> None:
        """A batch is done: `outcomes` counts its records, `last_offsets` per (topic, partition)."""
        for outcome, count in outcomes.items():
            child = self._records_by_outcome.get((processor, outcome))
            if child is None:
                child = self._records_by_outcome[processor, outcome] = self.records.labels(
                    processor, outcome
                )
            child.inc(count)
        now = time.time()
        for key, offset in last_offsets.items():
            progress = self._partitions.setdefault(key, PartitionProgress())
            progress.offset = offset
            progress.at = now

    def watch(self, topic: str, partition: int) -> None:
        """Tracks an assigned source partition before its first record arrives."""
        if topic in self.source_topics:
            self._partitions.setdefault((topic, partition), PartitionProgress(at=time.time()))

    def working(self, topic: str, partition: int) -> None:
        """Work on this partition is in flight (a long download): not a stall, though no
        offset moves. Callers bound that work with their own timeouts."""
        progress = self._partitions.get((topic, partition))
        if progress is not None:
            progress.at = time.time()

    def forget(self, topic: str, partition: int) -> None:
        self._partitions.pop((topic, partition), None)

    def _recovery_idle_s(self, state: RecoveryState, now: float) -> float:
        if not state.recovering:
            self._recovery_progress = None
            return 0.0
        last = self._recovery_progress
        if last is None or last[0] != state.remaining:
            self._recovery_progress = (state.remaining, now)
            return 0.0
        return now - last[1]

    def report(self) -> dict[str, Any]:
        now = time.time()
        recovery = self._recovery()
        recovery_idle = self._recovery_idle_s(recovery, now)
        partitions = []
        stalled = False
        for (topic, partition), progress in sorted(self._partitions.items()):
            highwater = self._highwater(topic, partition)
            committed = self._committed(topic, partition)
            done = max(progress.offset + 1, committed or 0)
            lag = None if highwater is None else max(0, highwater - done)
            idle = now - progress.at
            is_stalled = bool(lag) and idle > self._stall_timeout_s
            stalled = stalled or is_stalled
            labels = (topic, str(partition))
            self._offset.labels(*labels).set(progress.offset)
            self._idle.labels(*labels).set(idle)
            if lag is not None:
                self._lag.labels(*labels).set(lag)
            partitions.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "last_offset": progress.offset,
                    "lag": lag,
                    "seconds_since_progress": round(idle, 1),
                    "stalled": is_stalled,
                }
            )
        status = health_status(recovery, recovery_idle, stalled, self._stall_timeout_s)
        report: dict[str, Any] = {"status": status, "partitions": partitions}
        if recovery.recovering:
            report["recovery"] = {
                "changelog_records_remaining": recovery.remaining,
                "seconds_since_progress": round(recovery_idle, 1),
            }
        return report

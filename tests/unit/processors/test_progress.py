"""Stall detection: records waiting and nothing moving turns /healthz to 503."""

from __future__ import annotations

import time

import pytest

from processors.progress import ProgressTracker


def tracker(highwater: int, committed: int | None = None) -> ProgressTracker:
    progress = ProgressTracker(
        stall_timeout_s=0.05,
        highwater=lambda topic, partition: highwater,
        committed=lambda topic, partition: committed,
    )
    progress.source_topics.add("raw")
    progress.watch("raw", 0)
    return progress


def test_waiting_records_with_no_progress_is_a_stall() -> None:
    progress = tracker(highwater=10)
    time.sleep(0.1)
    report = progress.report()
    assert report["status"] == "stalled"
    assert report["partitions"][0]["lag"] == 10


def test_a_caught_up_partition_is_not_stalled_however_long_it_idles() -> None:
    progress = tracker(highwater=10)
    progress.processed("dedupe", "new_version", "raw", 0, 9)
    time.sleep(0.1)
    assert progress.report()["status"] == "ok"
    assert progress.report()["partitions"][0]["lag"] == 0


def test_after_a_restart_the_committed_offset_counts_as_done() -> None:
    progress = tracker(highwater=10, committed=10)
    time.sleep(0.1)
    report = progress.report()
    assert report["status"] == "ok"
    assert report["partitions"][0]["lag"] == 0


@pytest.mark.parametrize("working", [True, False])
def test_work_in_flight_is_not_a_stall(working: bool) -> None:
    progress = tracker(highwater=10)
    time.sleep(0.1)
    if working:
        progress.working("raw", 0)
    assert progress.report()["status"] == ("ok" if working else "stalled")


def test_changelog_partitions_are_not_watched() -> None:
    progress = tracker(highwater=10)
    progress.watch("changelog", 0)
    assert [p["topic"] for p in progress.report()["partitions"]] == ["raw"]


def test_a_recovering_worker_making_progress_is_recovering_not_stalled():
    from processors.progress import RecoveryState, health_status

    state = RecoveryState(recovering=True, remaining=1000)
    assert health_status(state, 5.0, any_partition_stalled=True, stall_timeout_s=60) == (
        "recovering"
    )


def test_a_recovery_without_progress_is_stalled():
    from processors.progress import RecoveryState, health_status

    state = RecoveryState(recovering=True, remaining=1000)
    assert health_status(state, 61.0, any_partition_stalled=False, stall_timeout_s=60) == (
        "stalled"
    )


def test_after_recovery_partitions_decide():
    from processors.progress import RecoveryState, health_status

    done = RecoveryState(recovering=False)
    assert health_status(done, 0.0, any_partition_stalled=False, stall_timeout_s=60) == "ok"
    assert health_status(done, 0.0, any_partition_stalled=True, stall_timeout_s=60) == "stalled"


def test_the_tracker_reports_remaining_and_flags_a_recovery_that_stops(monkeypatch):
    from processors.progress import ProgressTracker, RecoveryState

    now = [1000.0]
    monkeypatch.setattr("processors.progress.time.time", lambda: now[0])
    remaining = [500]
    tracker = ProgressTracker(
        10.0, lambda t, p: None, recovery=lambda: RecoveryState(True, remaining[0])
    )
    report = tracker.report()
    assert report["status"] == "recovering"
    assert report["recovery"]["changelog_records_remaining"] == 500
    now[0] += 8
    remaining[0] = 100
    assert tracker.report()["status"] == "recovering"
    now[0] += 11  # no record restored for 11 s > 10 s
    assert tracker.report()["status"] == "stalled"
    remaining[0] = 50
    assert tracker.report()["status"] == "recovering"


def test_a_batch_counts_each_outcome_and_moves_each_partition_to_its_last_offset() -> None:
    progress = tracker(highwater=10)
    progress.watch("raw", 1)
    progress.processed_batch(
        "dedupe", {"new_version": 3, "duplicate": 2}, {("raw", 0): 9, ("raw", 1): 4}
    )
    progress.processed("dedupe", "new_version", "raw", 1, 5)

    def count(outcome: str) -> float | None:
        return progress.registry.get_sample_value(
            "onoff_processor_records_total", {"processor": "dedupe", "outcome": outcome}
        )

    assert (count("new_version"), count("duplicate")) == (4.0, 2.0)
    offsets = {p["partition"]: p["last_offset"] for p in progress.report()["partitions"]}
    assert offsets == {0: 9, 1: 5}

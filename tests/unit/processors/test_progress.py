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

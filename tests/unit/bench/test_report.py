"""The performance report picks the newest result of each benchmark and draws real charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import latency_chart, latest, rows, throughput_chart

MACHINE = {"cpus": 2, "cpu_model": "Test CPU", "memory_gib": 24, "python": "3.11", "note": "n"}


def _write(folder: Path, name: str, data: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps({"machine": MACHINE, **data}))


def test_the_newest_result_of_each_benchmark_is_reported(tmp_path: Path) -> None:
    metrics = {"benchmark": "metrics", "call_versions": 10, "worker_peak_rss_mb": 1.0}
    ceiling = {"ceiling_plain_consumer_decode_per_s": 9000.0}
    _write(
        tmp_path,
        "metrics-20260101T000000Z.json",
        metrics | ceiling | {"date": "2026-01-01", "worker_versions_per_s": 111.0},
    )
    _write(
        tmp_path,
        "metrics-20260201T000000Z.json",
        metrics | ceiling | {"date": "2026-02-01", "worker_versions_per_s": 222.0},
    )
    distribution = [float(i) for i in range(201)]
    _write(
        tmp_path,
        "latency-20260201T000000Z.json",
        {
            "benchmark": "latency",
            "date": "2026-02-01",
            "rate_per_s": 500,
            "to_calls_ms": {"p50": 40.0, "p95": 90.0, "p99": 120.0, "max": 150.0},
            "to_metrics_ms": {"p50": 400.0, "p95": 900.0, "p99": 1200.0, "max": 1500.0},
            "to_calls_distribution_ms": distribution,
            "to_metrics_distribution_ms": [d * 10 for d in distribution],
        },
    )
    found = latest(tmp_path)
    assert found["metrics"]["worker_versions_per_s"] == 222.0
    table = "\n".join(rows(found))
    assert "222 versions/s" in table and "111 versions/s" not in table
    assert "p99 120.0 ms" in table and "p99 1200.0 ms" in table
    assert "2026-02-01, Test CPU" in table

    assert latency_chart(found["latency"], tmp_path / "latency.png")
    assert throughput_chart(found, tmp_path / "throughput.png")
    for target in ("latency.png", "throughput.png"):
        assert (tmp_path / target).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_results_say_so_and_draw_nothing(tmp_path: Path) -> None:
    assert "no results yet" in "\n".join(rows(latest(tmp_path)))
    assert not throughput_chart({}, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_each_processor_and_store_gets_its_own_recovery_row_with_the_spread_of_runs(
    tmp_path: Path,
) -> None:
    recovery = {"benchmark": "recovery", "date": "2026-02-01", "records": 200_000}
    for stamp, processor, store, ready in [
        ("20260201T000000Z", "dedupe", "memory", 9.0),
        ("20260201T000001Z", "metrics", "memory", 5.0),
        ("20260201T000002Z", "dedupe", "rocksdb", 6.0),
    ]:
        runs = [{"seconds_to_ready": s, "records_per_s": round(200_000 / s)} for s in (4.0, ready)]
        _write(
            tmp_path,
            f"recovery-{stamp}.json",
            recovery
            | {"processor": processor, "store": store, "seconds_to_ready": ready, "runs": runs}
            | {"records_per_s": round(200_000 / ready)},
        )
    table = "\n".join(rows(latest(tmp_path)))
    assert "dedupe restart (200,000 changelog records) | 22,222 records/s, ready in 9.0 s" in table
    assert "dedupe restart (200,000 changelog records, rocksdb) | 33,333 records/s" in table
    assert "metrics restart (200,000 changelog records) | 40,000 records/s" in table
    assert "(median of 2 runs, 4.0 to 9.0 s)" in table

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


def test_a_profiled_or_experimental_run_does_not_stand_for_the_code(tmp_path: Path) -> None:
    metrics = {"benchmark": "metrics", "call_versions": 10, "worker_peak_rss_mb": 1.0}
    for stamp, rate, note in [
        ("20260101", 300.0, None),
        ("20260102", 250.0, "profiling run: py-spy attached to the worker"),
        ("20260103", 900.0, "experiment, not kept: GC off"),
    ]:
        extra = {} if note is None else {"note": note}
        _write(
            tmp_path,
            f"metrics-{stamp}T000000Z.json",
            metrics | {"date": stamp, "worker_versions_per_s": rate} | extra,
        )
    assert latest(tmp_path)["metrics"]["worker_versions_per_s"] == 300.0


def test_no_results_say_so_and_draw_nothing(tmp_path: Path) -> None:
    assert "no results yet" in "\n".join(rows(latest(tmp_path)))
    assert not throughput_chart({}, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()


def test_the_ingress_row_is_followed_by_its_spooling_figures(tmp_path: Path) -> None:
    wrk = {"latency_ms": {"p99": 9.5}}
    _write(
        tmp_path,
        "ingress-20260301T000000Z.json",
        {
            "benchmark": "ingress",
            "date": "2026-03-01",
            "ingress": wrk | {"ok_per_s": 4000.0},
            "null_endpoint": {"ok_per_s": 16000.0},
            "spooling": {
                "kafka_stopped": wrk | {"ok_per_s": 3100.0},
                "drain": {"records": 50000, "seconds": 5.0, "records_per_s": 10000.0},
            },
        },
    )
    table = rows(latest(tmp_path))
    [spooling] = [row for row in table if "spool" in row]
    assert "3,100 req/s" in spooling and "10,000 records/s" in spooling
    assert "half the ingress's rate (2,000 req/s)" in spooling
    assert table.index(spooling) == 3  # right after the ingress's own row


def test_a_latency_run_that_saw_nothing_or_not_everything_says_so(tmp_path: Path) -> None:
    figures = {"p50": 40.0, "p95": 90.0, "p99": 120.0, "max": 150.0}
    _write(
        tmp_path,
        "latency-20260201T000000Z.json",
        {
            "benchmark": "latency",
            "date": "2026-02-01",
            "rate_per_s": 500,
            "answered": 1000,
            "seen_in_calls": 990,
            "seen_in_metrics": 0,
            "to_calls_ms": figures,
            "to_metrics_ms": None,
            "to_calls_distribution_ms": [],
            "to_metrics_distribution_ms": [],
        },
    )
    table = "\n".join(rows(latest(tmp_path)))
    assert "p99 120.0 ms (10 of 1,000 not seen)" in table
    assert "200 → metrics | none seen within the wait" in table
    assert not latency_chart(latest(tmp_path)["latency"], tmp_path / "latency.png")


def test_the_peers_run_gives_each_store_its_ratios_and_the_rss_with_a_million_calls(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        "peers-20260301T000000Z.json",
        {
            "benchmark": "peers",
            "date": "2026-03-01",
            "deliveries": 200000,
            "peer": "quixstreams 3.28.1",
            "peer_events_per_s": 6000.0,
            "faust_noop_events_per_s": 12000.0,
            "dedupe_events_per_s": 4500.0,
            "dedupe_memory_events_per_s": 5400.0,
            "dedupe_rocksdb_events_per_s": 4500.0,
            "metrics_versions_per_s": 700.0,
            "rocksdb_rss_mb_1m_calls": 250.4,
            "rss_calls": 1000000,
        },
    )
    table = "\n".join(rows(latest(tmp_path)))
    assert "5,400 events/s: 0.90 of the peer, 0.45 of Faust's no-op" in table
    assert "4,500 events/s: 0.75 of the peer, 0.38 of Faust's no-op" in table
    assert "700 call versions/s" in table
    assert "1,000,000 calls in state | peak RSS 250 MB" in table


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

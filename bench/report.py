"""The performance report: the latest result of each benchmark as a table and two charts.

Reads bench/results/*.json (the newest file of each benchmark and variant),
writes docs/performance.md with the table, docs/images/latency.png (the
end-to-end latency distribution) and docs/images/throughput.png (each part's
rate against the ceiling measured in the same run), and rewrites the block
between the markers in the README's performance section. Only measured
figures appear; a benchmark that has no result yet says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMAGES = ROOT / "docs" / "images"
PAGE = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
# How the notes of runs that do not stand for the code begin (see `latest`).
NOT_REPRESENTATIVE = ("profiling run", "experiment")


def latest(results: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The newest result per benchmark (and per store, for dedupe), by file name order.

    A run whose note says it was a profile (py-spy attached) or an experiment not
    kept does not stand for the code: it is left out.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*.json")):  # names end in a UTC time stamp
        data = json.loads(path.read_text())
        if str(data.get("note", "")).startswith(NOT_REPRESENTATIVE):
            continue
        name = str(data.get("benchmark", path.stem))
        if name == "dedupe":
            name = f"dedupe-{data.get('store', 'memory')}"
        if name == "recovery":
            store = data.get("store", "memory")
            name = f"recovery-{data.get('processor', '?')}" + (
                "" if store == "memory" else f"-{store}"
            )
        chosen[name] = data | {"_file": path.name}
    return chosen


def _when(data: dict[str, Any]) -> str:
    cpu = data.get("machine", {}).get("cpu_model", "?")
    return f"{str(data.get('date', ''))[:10]}, {cpu}"


def _spread(runs: list[dict[str, Any]]) -> str:
    """ "(median of 3 runs, 4.5 to 6.2 s)" for a benchmark that kept every run."""
    if len(runs) < 2:
        return ""
    ready = sorted(r["seconds_to_ready"] for r in runs)
    return f" (median of {len(runs)} runs, {ready[0]} to {ready[-1]} s)"


def _row(part: str, measured: str, against: str, date: str) -> str:
    return f"| {part} | {measured} | {against} | {date} |"


def _latency(figures: dict[str, float] | None, seen: int | None, answered: int | None) -> str:
    if not figures:
        return "none seen within the wait"
    measured = f"p50 {figures['p50']} ms, p95 {figures['p95']} ms, p99 {figures['p99']} ms"
    if seen is not None and answered and seen < answered:
        # Percentiles of the calls that arrived only: say how many did not.
        measured += f" ({answered - seen:,} of {answered:,} not seen)"
    return measured


def rows(found: dict[str, dict[str, Any]]) -> list[str]:
    out = ["| part | measured | against | date, CPU |", "| --- | --- | --- | --- |"]
    if ingress := found.get("ingress"):
        full = ingress["ingress"]
        out.append(
            _row(
                "ingress (one process, wrk, 64 connections)",
                f"{full['ok_per_s']:,.0f} req/s, p99 {full['latency_ms']['p99']} ms",
                f"null endpoint {ingress['null_endpoint']['ok_per_s']:,.0f} req/s",
                _when(ingress),
            )
        )
        half = ingress.get("ingress_half_rate", {})
        if str(half.get("generator", "")).startswith("vegeta"):  # open loop; before, wrk's
            latency = half["latency_ms"]
            out.append(
                _row(
                    "ingress at half that rate (vegeta, open loop, constant rate)",
                    f"{half['ok_per_s']:,.0f} req/s, p50 {latency['p50']} ms, "
                    f"p99 {latency['p99']} ms",
                    "goal: p99 no worse than before issue 12 "
                    "(10.1 ms at 2,600/s on 2026-11-27; 11.5 ms in the issue)",
                    _when(ingress),
                )
            )
        if spooling := ingress.get("spooling"):
            stopped, drain = spooling["kafka_stopped"], spooling["drain"]
            out.append(
                _row(
                    "ingress with its spool, Kafka stopped (same load)",
                    f"{stopped['ok_per_s']:,.0f} req/s, p99 {stopped['latency_ms']['p99']} ms; "
                    f"drained at {drain['records_per_s']:,.0f} records/s once Kafka was back",
                    f"goal ≥ half the ingress's rate ({full['ok_per_s'] / 2:,.0f} req/s)",
                    _when(ingress),
                )
            )
    for store in ("memory", "rocksdb"):
        if dedupe := found.get(f"dedupe-{store}"):
            out.append(
                _row(
                    f"dedupe ({store} store, {dedupe['deliveries']:,} deliveries)",
                    f"{dedupe['worker_events_per_s']:,.0f} events/s, "
                    f"RSS {dedupe['worker_peak_rss_mb']:.0f} MB",
                    f"plain consumer {dedupe['ceiling_plain_consumer_decode_per_s']:,.0f}/s",
                    _when(dedupe),
                )
            )
    if metrics := found.get("metrics"):
        out.append(
            _row(
                f"metrics ({metrics['call_versions']:,} call versions)",
                f"{metrics['worker_versions_per_s']:,.0f} versions/s, "
                f"RSS {metrics['worker_peak_rss_mb']:.0f} MB",
                f"plain consumer {metrics['ceiling_plain_consumer_decode_per_s']:,.0f}/s",
                _when(metrics),
            )
        )
    if peers := found.get("peers"):
        out.extend(peer_rows(peers))
    for name, data in sorted(found.items()):
        if name.startswith("recovery-"):
            out.append(
                _row(
                    f"{data['processor']} restart ({data['records']:,} changelog records"
                    + ("" if data.get("store", "memory") == "memory" else f", {data['store']}")
                    + ")",
                    f"{data['records_per_s']:,.0f} records/s, "
                    f"ready in {data['seconds_to_ready']} s" + _spread(data.get("runs", [])),
                    "goal ≥ 10,000 records/s, ready < 30 s",
                    _when(data),
                )
            )
    if latency := found.get("latency"):
        for target, field, seen, goal in (
            ("onoff.calls", "to_calls_ms", "seen_in_calls", "goal p99 ≤ 1,000 ms"),
            ("metrics", "to_metrics_ms", "seen_in_metrics", "goal p99 ≤ 2,000 ms"),
        ):
            out.append(
                _row(
                    f"end to end at {latency['rate_per_s']:g} calls/s: 200 → {target}",
                    _latency(latency.get(field), latency.get(seen), latency.get("answered")),
                    goal,
                    _when(latency),
                )
            )
    if len(out) == 2:
        out.append("| (no results yet: run `make bench`) | | | |")
    return out


def peer_rows(peers: dict[str, Any]) -> list[str]:
    """`make bench-peers`: every rate of one run, so the ratios are of the same minute."""
    peer, noop = peers["peer_events_per_s"], peers["faust_noop_events_per_s"]
    same_run = f"same run, {peers['deliveries']:,} deliveries"
    out = []
    for store in ("memory", "rocksdb"):
        rate = peers[f"dedupe_{store}_events_per_s"]
        out.append(
            _row(
                f"dedupe beside its peers ({store} store, {same_run})",
                f"{rate:,.0f} events/s: {rate / peer:.2f} of the peer, "
                f"{rate / noop:.2f} of Faust's no-op",
                f"{peers['peer']} peer {peer:,.0f}/s; Faust no-op {noop:,.0f}/s; "
                "goal ≥ 0.8 of the peer, ≥ 0.4 of the no-op",
                _when(peers),
            )
        )
    if peers.get("metrics_versions_per_s") is not None:
        out.append(
            _row(
                f"metrics beside its peers ({same_run})",
                f"{peers['metrics_versions_per_s']:,.0f} call versions/s",
                # Both on the memory store: the metrics run reads that dedupe run's versions.
                f"dedupe (memory) {peers['dedupe_memory_events_per_s']:,.0f} events/s; "
                "goal ≥ 4,000 versions/s and ≥ half of dedupe's rate",
                _when(peers),
            )
        )
    if (rss := peers.get("rocksdb_rss_mb_1m_calls")) is not None:
        out.append(
            _row(
                f"dedupe, RocksDB store, {peers['rss_calls']:,} calls in state",
                f"peak RSS {rss:,.0f} MB",
                "goal ≤ 300 MB with 1,000,000 calls",
                _when(peers),
            )
        )
    return out


def latency_chart(latency: dict[str, Any], target: Path) -> bool:
    calls = latency.get("to_calls_distribution_ms") or []
    metrics = latency.get("to_metrics_distribution_ms") or []
    if not calls:
        return False
    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    shares = [i / (len(calls) - 1) * 100 for i in range(len(calls))]
    axis.plot(calls, shares, label="200 → onoff.calls")
    if metrics:
        axis.plot(
            metrics,
            [i / (len(metrics) - 1) * 100 for i in range(len(metrics))],
            label="200 → metrics",
        )
    axis.axhline(99, color="grey", linewidth=0.6, linestyle=":")
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel("share of calls (%)")
    axis.set_title(
        f"End-to-end latency at {latency['rate_per_s']:g} calls/s ({latency['date'][:10]})"
    )
    axis.legend()
    axis.grid(True, which="both", linewidth=0.3)
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
    return True


def _throughputs(found: dict[str, dict[str, Any]]) -> Iterable[tuple[str, float, float]]:
    if ingress := found.get("ingress"):
        yield "ingress", ingress["ingress"]["ok_per_s"], ingress["null_endpoint"]["ok_per_s"]
    for store in ("memory", "rocksdb"):
        if dedupe := found.get(f"dedupe-{store}"):
            yield (
                f"dedupe ({store})",
                dedupe["worker_events_per_s"],
                dedupe["ceiling_plain_consumer_decode_per_s"],
            )
    if metrics := found.get("metrics"):
        yield (
            "metrics",
            metrics["worker_versions_per_s"],
            metrics["ceiling_plain_consumer_decode_per_s"],
        )


def throughput_chart(found: dict[str, dict[str, Any]], target: Path) -> bool:
    bars = list(_throughputs(found))
    if not bars:
        return False
    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    names = [name for name, _, _ in bars]
    positions = range(len(bars))
    axis.barh(
        [p + 0.2 for p in positions],
        [c for _, _, c in bars],
        height=0.4,
        label="ceiling",
        color="#c8c8c8",
    )
    axis.barh(
        [p - 0.2 for p in positions],
        [r for _, r, _ in bars],
        height=0.4,
        label="measured",
        color="#3a7bd5",
    )
    axis.set_yticks(list(positions), names)
    axis.set_xscale("log")
    axis.set_xlabel("per second (log scale)")
    axis.set_title("Throughput of each part against its ceiling, same run")
    axis.legend()
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
    return True


def machine_line(found: dict[str, dict[str, Any]]) -> str:
    for data in found.values():
        if machine := data.get("machine"):
            return (
                f"{machine['cpus']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
                f"Python {machine['python']}; {machine['note']}."
            )
    return ""


def main() -> None:
    found = latest()
    IMAGES.mkdir(parents=True, exist_ok=True)
    table = "\n".join(rows(found))
    pictures = []
    if (latency := found.get("latency")) and latency_chart(latency, IMAGES / "latency.png"):
        pictures.append("![End-to-end latency](images/latency.png)")
    if throughput_chart(found, IMAGES / "throughput.png"):
        pictures.append("![Throughput against ceilings](images/throughput.png)")
    sources = ", ".join(f"`{d['_file']}`" for d in found.values())
    page = "\n\n".join(
        [
            "# Performance\n\n[← README](../README.md)",
            "Generated by `make bench` (`bench/report.py`) from the newest result of each "
            "benchmark in `bench/results/`. Machine: " + (machine_line(found) or "not recorded"),
            table,
            *pictures,
            f"Sources: {sources or 'none yet'}. "
            "How each is measured: [benchmarks.md](benchmarks.md).",
        ]
    )
    PAGE.write_text(page + "\n")
    block = "\n".join(
        [START, table, "", *[p.replace("images/", "docs/images/") + "\n" for p in pictures], END]
    )
    readme = README.read_text()
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        README.write_text(head + block + rest.split(END, 1)[1])
    print(table)
    print(
        f"wrote {PAGE.relative_to(ROOT)} and {len(pictures)} chart(s) in {IMAGES.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()

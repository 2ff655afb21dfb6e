"""`make bench-peers`: dedupe beside its ceilings and a quix-streams peer, same input, same run.

On one topic of BENCH_DELIVERIES realistic deliveries (`bench.dedupe.deliveries`),
one after the other, each from the start of the topic with a consumer group of
its own:

1. a plain confluent-kafka consumer decoding the records (the Kafka ceiling);
2. Faust's no-op ceiling: an agent that only counts `stream.events()`;
3. our dedupe worker with the memory store, then with the RocksDB store;
4. the quix-streams peer (`bench/peers/quix_dedupe.py`, its own venv);
5. our metrics worker, reading the versions that run 3 wrote (call versions/s).

Each dedupe contender writes its own output topic. Each output must equal,
record for record, the versions `processors.merge.decide` makes of the same
deliveries in production order; a run where they differ fails. Then, unless
BENCH_RSS_CALLS=0, a RocksDB worker folds that many distinct calls (default
1,000,000) and its peak RSS is taken with all of them in state.

Prints a table and saves bench/results/peers-<time>.json. Ratios are only
meaningful within one run: the machine's other load moves every figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import (
    bench_topics,
    free_port,
    machine,
    own_topics,
    peak_rss_mb,
    save,
    say,
    stack,
    stop,
    worker_env,
)
from bench.dedupe import ceiling, deliveries, load, processed
from ingress.publisher import producer_config
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from onoff_bridge.topics import ensure_topics, topic_specs
from processors.merge import Outcome, decide
from processors.records import EventClock
from schemas import AvroCodec, SchemaName, registry_client

ROOT = Path(__file__).resolve().parents[2]
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "200000"))
RSS_CALLS = int(os.environ.get("BENCH_RSS_CALLS", "1000000"))
# 0 leaves the metrics worker out (its figure is then null): for quick dedupe comparisons.
WITH_METRICS = os.environ.get("BENCH_METRICS", "1") != "0"
# Each contender runs ROUNDS times, in alternating order; the table keeps the best of each.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
QUIX_PYTHON = os.environ.get("BENCH_QUIX_PYTHON", str(ROOT / "var/bench/quix-venv/bin/python"))
RETENTION = timedelta(days=30)  # the workers' default
POLL_S = 0.2
TIMEOUT_S = 1800.0


LABELS = {
    "noop": "Faust no-op agent counting stream.events()",
    "memory": "dedupe worker, memory store",
    "rocksdb": "dedupe worker, RocksDB store",
    "peer": "quix-streams peer (RocksDB state, at-least-once)",
}


@dataclass
class Run:
    events_per_s: float
    peak_rss_mb: float
    # Events per second of the contender's own CPU time (all its threads): what the
    # other load on the machine moves least.
    events_per_cpu_s: float = float("nan")
    output: str | None = None  # the topic it wrote its versions to


def main() -> None:
    if not Path(QUIX_PYTHON).exists():
        raise SystemExit(f"error: {QUIX_PYTHON} not found; `make bench-peers` installs it")
    endpoints = stack()
    bootstrap = endpoints.kafka_bootstrap_servers
    topics = bench_topics(endpoints)
    registry = registry_client(endpoints.schema_registry_url)
    events = deliveries(DELIVERIES)
    calls = len({key for key, _ in events})
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, topics.cdr_raw)
    say(f"loading {len(events)} deliveries of {calls} calls into {topics.cdr_raw}")
    load(bootstrap, codec, topics.cdr_raw, events)
    expected = reference_versions(events)
    say(f"  decide makes {len(expected)} versions of them")
    del events

    say("plain consumer decoding the records")
    plain = ceiling(bootstrap, codec, topics.cdr_raw, DELIVERIES)
    say(f"   {plain:,.0f} records/s")
    contenders = {
        "noop": lambda: peer(
            [sys.executable, "-m", "bench.peers.faust_noop"], endpoints, topics.cdr_raw, "noop"
        ),
        "memory": lambda: dedupe_worker(endpoints, topics, "memory", DELIVERIES),
        "rocksdb": lambda: dedupe_worker(endpoints, topics, "rocksdb", DELIVERIES),
        "peer": lambda: quix_peer(endpoints, topics),
    }
    runs: dict[str, list[Run]] = {name: [] for name in contenders}
    for round_ in range(ROUNDS):
        # Every other round backwards, so a load that comes and goes hits each contender.
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        for name in order:
            say(f"round {round_ + 1}: {LABELS[name]}")
            run = contenders[name]()
            runs[name].append(run)
            say(
                f"   {run.events_per_s:,.0f} events/s, {run.events_per_cpu_s:,.0f} per CPU second, "
                f"peak RSS {run.peak_rss_mb:.0f} MB"
            )
    best = {name: max(found, key=lambda r: r.events_per_s) for name, found in runs.items()}
    noop, quix = best["noop"], best["peer"]

    say("checking every contender's output against decide's versions")
    outputs = {
        f"{LABELS[name]}, round {n + 1}": run.output
        for name, found in runs.items()
        for n, run in enumerate(found)
        if run.output
    }
    problems = {
        name: check_output(bootstrap, registry, topic, expected) for name, topic in outputs.items()
    }
    for name, problem in problems.items():
        say(f"   {name}: {problem or f'{len(expected)} versions, identical'}")

    metrics = Run(float("nan"), float("nan"))
    if WITH_METRICS:
        say("5. metrics worker on the versions of run 3 (memory)")
        metrics = metrics_worker(
            endpoints,
            output_topics(endpoints, topics, "metrics"),
            best["memory"].output or "",
            len(expected),
        )
        say(f"   {metrics.events_per_s:,.0f} versions/s, peak RSS {metrics.peak_rss_mb:.0f} MB")

    rss_1m = None
    if RSS_CALLS:
        say(f"6. RocksDB worker with {RSS_CALLS:,} distinct calls in state")
        rss_1m = rocksdb_rss(endpoints, registry, RSS_CALLS)
        say(f"   peak RSS {rss_1m:.0f} MB")

    dedupe = {store: best[store] for store in ("memory", "rocksdb")}
    slower = min(dedupe.values(), key=lambda r: r.events_per_s)
    result: dict[str, Any] = {
        "benchmark": "peers",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "deliveries": DELIVERIES,
        "calls": calls,
        "versions": len(expected),
        "rounds": ROUNDS,
        "plain_consumer_decode_per_s": plain,
        "faust_noop_events_per_s": noop.events_per_s,
        # Either store must meet the goal, so the headline is the slower one.
        "dedupe_events_per_s": slower.events_per_s,
        "peer_events_per_s": quix.events_per_s,
        "dedupe_over_peer": round(slower.events_per_s / quix.events_per_s, 3),
        "dedupe_over_faust_noop": round(slower.events_per_s / noop.events_per_s, 3),
        "metrics_versions_per_s": metrics.events_per_s if WITH_METRICS else None,
        "rocksdb_rss_mb_1m_calls": rss_1m,
        "rss_calls": RSS_CALLS or None,
        "peer": "quixstreams " + quix_version(),
        "peak_rss_mb": {
            "dedupe_memory": dedupe["memory"].peak_rss_mb,
            "dedupe_rocksdb": dedupe["rocksdb"].peak_rss_mb,
            "peer": quix.peak_rss_mb,
            "metrics": metrics.peak_rss_mb if WITH_METRICS else None,
        },
        # Per CPU second of each contender's own process: the same comparison with the
        # machine's other load taken out (each is a single process).
        "events_per_cpu_s": {name: run.events_per_cpu_s for name, run in best.items()},
        "all_rounds_events_per_s": {
            name: [run.events_per_s for run in found] for name, found in runs.items()
        },
        "outputs_identical": not any(problems.values()),
    }
    for store, run in dedupe.items():
        result[f"dedupe_{store}_events_per_s"] = run.events_per_s
        result[f"dedupe_{store}_over_peer"] = round(run.events_per_s / quix.events_per_s, 3)
        result[f"dedupe_{store}_over_faust_noop"] = round(run.events_per_s / noop.events_per_s, 3)
        result[f"dedupe_{store}_over_peer_per_cpu_s"] = round(
            run.events_per_cpu_s / quix.events_per_cpu_s, 3
        )
    print(table(result))
    if any(problems.values()):
        raise SystemExit(f"error: the outputs differ: {problems}")
    path = save("peers", result)
    say(f"saved {path}")


def reference_versions(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What dedupe must emit: `decide` over the deliveries in production order."""
    state: dict[str, dict[str, Any]] = {}
    clock = EventClock()
    versions = []
    for call_id, event in events:
        clock.advance(event["ingest"]["receivedAt"])
        outcome, call = decide(state.get(call_id), event, clock.now, RETENTION)
        if outcome is Outcome.NEW_VERSION:
            state[call_id] = call
            versions.append(call)
    return versions


def output_topics(endpoints: StackEndpoints, topics: TopicNames, label: str) -> TopicNames:
    """The same source; the outputs (and Faust's own topics later) are the contender's own."""
    suffix = f"{label}.{uuid.uuid4().hex[:6]}"
    own = topics.model_copy(
        update={
            "calls": f"{topics.calls}.{suffix}",
            "deadletter": f"{topics.deadletter}.{suffix}",
            "user_call_metrics": f"{topics.user_call_metrics}.{suffix}",
        }
    )
    ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(own))
    return own


def dedupe_worker(endpoints: StackEndpoints, topics: TopicNames, store: str, total: int) -> Run:
    """One dedupe worker from the start of the source, into output topics of its own."""
    own = output_topics(endpoints, topics, store)
    port = free_port()
    env = worker_env(endpoints, own, port, "dedupe", ONOFF_BRIDGE_STORE=store)
    with worker(env, "dedupe") as process:
        rate, per_cpu_s = watch(port, "dedupe", total, process.pid)
        return Run(rate, round(peak_rss_mb(process.pid), 1), per_cpu_s, own.calls)


def quix_peer(endpoints: StackEndpoints, topics: TopicNames) -> Run:
    own = output_topics(endpoints, topics, "quix")
    run = peer(
        [QUIX_PYTHON, "-m", "bench.peers.quix_dedupe"],
        endpoints,
        topics.cdr_raw,
        "quix",
        BENCH_PEER_OUTPUT=own.calls,
    )
    run.output = own.calls
    return run


def metrics_worker(
    endpoints: StackEndpoints, topics: TopicNames, calls_topic: str, versions: int
) -> Run:
    """As `make bench-metrics` times it: until every version is counted and updates stop."""
    topics = topics.model_copy(update={"calls": calls_topic})
    port = free_port()
    env = worker_env(endpoints, topics, port, "metrics")
    with worker(env, "metrics") as process:
        first = done_at = None
        counted, updates, updates_at = 0.0, -1.0, time.perf_counter()
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError):
                counted = processed(port, "metrics", exclude="window_")
                window_updates = processed(port, "metrics") - counted
                now = time.perf_counter()
                if counted and first is None:
                    first = now
                if window_updates != updates:
                    updates, updates_at = window_updates, now
                if counted >= versions and now - updates_at > 3:
                    done_at = updates_at
                    break
        assert first is not None and done_at is not None, f"counted {counted} of {versions}"
        return Run(round(versions / (done_at - first), 1), round(peak_rss_mb(process.pid), 1))


@contextlib.contextmanager
def worker(env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "onoff_bridge", "worker", name], env=env)
    try:
        yield process
    finally:
        stop(process, 60)


def watch(port: int, processor: str, total: int, pid: int) -> tuple[float, float]:
    """Records/s, and per CPU second of `pid`, from the first time the worker reports
    any to when it reports them all."""
    first = last = None
    count = 0.0
    deadline = time.monotonic() + TIMEOUT_S
    while count < total and time.monotonic() < deadline:
        time.sleep(POLL_S)
        try:
            count = processed(port, processor)
        except httpx.HTTPError:
            continue
        now, cpu = time.perf_counter(), cpu_seconds(pid)
        if count and first is None:
            first = (now, count, cpu)
        last = (now, count, cpu)
    assert first is not None and last is not None and last[1] == total, f"processed {count}"
    done = last[1] - first[1]
    return round(done / (last[0] - first[0]), 1), round(done / (last[2] - first[2]), 1)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peer(
    command: list[str], endpoints: StackEndpoints, source: str, label: str, **extra: str
) -> Run:
    """Runs a contender until it writes its result, then stops it.

    The result: {"processed", "seconds", "cpu_seconds", "peak_rss_mb"}, both times
    from the first event to the last, the CPU time of the whole process
    (time.process_time).
    """
    state_dir = tempfile.mkdtemp(prefix=f"bench-{label}-")
    result = Path(state_dir) / "result.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_PEER_BOOTSTRAP": endpoints.kafka_bootstrap_servers,
        "BENCH_PEER_REGISTRY": endpoints.schema_registry_url,
        "BENCH_PEER_SOURCE": source,
        "BENCH_PEER_EXPECTED": str(DELIVERIES),
        "BENCH_PEER_GROUP": own_topics(f"bench-{label}-{uuid.uuid4().hex[:6]}"),
        "BENCH_PEER_STATE_DIR": state_dir,
        "BENCH_PEER_RESULT": str(result),
        **extra,
    }
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not result.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
    finally:
        stop(process, 60)
    if not result.exists():
        raise SystemExit(f"error: {command} ended ({process.returncode}) without a result")
    report = json.loads(result.read_text())
    done = report["processed"] - 1
    return Run(
        round(done / report["seconds"], 1),
        report["peak_rss_mb"],
        round(done / report["cpu_seconds"], 1),
    )


def check_output(
    bootstrap: str, registry: Any, topic: str, expected: list[dict[str, Any]]
) -> str | None:
    """None when `topic` holds exactly the expected versions, else what differs."""
    codec = AvroCodec(registry, SchemaName.CALL, topic)
    got = [codec.decode(value) for value in read_all(bootstrap, topic)]
    if len(got) != len(expected):
        return f"{len(got)} records, {len(expected)} expected"
    order = lambda call: (call["id"], call["version"])  # noqa: E731
    for mine, theirs in zip(sorted(got, key=order), sorted(expected, key=order), strict=True):
        if mine != theirs:
            return f"call {mine['id']} version {mine['version']} differs"
    return None


def read_all(bootstrap: str, topic: str) -> Iterator[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        while ends:
            message = consumer.poll(5)
            if message is None or message.error() is not None:
                continue
            yield message.value() or b""
            if (message.offset() or 0) + 1 >= ends.get(message.partition() or 0, 0):
                ends.pop(message.partition(), None)
    finally:
        consumer.close()


def distinct_calls(count: int, seed: int = 11) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` deliveries of as many calls: what 1M calls in state takes."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(count):
        started = now - timedelta(minutes=rng.randint(10, 60 * 24 * 7))
        call_id = f"rss-{n:08d}-{rng.getrandbits(32):08x}"
        yield (
            call_id,
            {
                "id": call_id,
                "eventName": "CDR",
                "onoffUserName": None,
                "onoffUserEmail": f"user{rng.randint(1, 500)}@example.com",
                "onoffUserNumber": f"+1555010{rng.randint(1000, 9999)}",
                "externalNumber": f"+1555019{rng.randint(1000, 9999)}",
                "externalName": None,
                "externalEmail": None,
                "callStarted": started,
                "callEnded": started + timedelta(seconds=rng.randint(0, 900)),
                "callDuration": rng.randint(0, 900),
                "callDirection": rng.choice(["INBOUND", "OUTBOUND"]),
                "callStatus": rng.choice(["ANSWERED", "MISSED", "VOICEMAIL"]),
                "callNotes": "Asked for the March invoice.",
                "voicemailUrl": None,
                "voicemailDuration": None,
                "callRecordingUrl": None,
                "tags": [{"tagId": "t-0001", "tagName": "Billing", "tagColor": "#32A8FF"}],
                "extraJson": None,
                "ingest": {
                    "receivedAt": now + timedelta(milliseconds=n),
                    "requestId": f"r{n}",
                    "contentSha256": f"{rng.getrandbits(256):064x}",
                    "apiKeyName": "bench",
                    "path": "/v1/onoff/cdr",
                },
            },
        )


def rocksdb_rss(endpoints: StackEndpoints, registry: Any, count: int) -> float:
    topics = bench_topics(endpoints)
    codec = AvroCodec(registry, SchemaName.CALL_EVENT, topics.cdr_raw)
    producer = Producer(
        producer_config(endpoints.kafka_bootstrap_servers, message_timeout_ms=60_000)
    )
    for key, event in distinct_calls(count):
        while True:
            try:
                producer.produce(topics.cdr_raw, key=key.encode(), value=codec.encode(event))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0
    say(f"   loaded {count:,} calls; the worker folds them")
    run = dedupe_worker(endpoints, topics, "rocksdb", count)
    say(f"   ({run.events_per_s:,.0f} events/s)")
    return run.peak_rss_mb


def quix_version() -> str:
    return subprocess.run(
        [QUIX_PYTHON, "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def table(result: dict[str, Any]) -> str:
    noop, peer_rate = result["faust_noop_events_per_s"], result["peer_events_per_s"]
    rss, cpu = result["peak_rss_mb"], result["events_per_cpu_s"]
    lines = [
        f"peers, {result['deliveries']:,} deliveries of {result['calls']:,} calls "
        f"({result['versions']:,} versions), best of {result['rounds']} rounds, {result['date']}",
        f"{'contender':<42} {'events/s':>9} {'/ peer':>7} {'/ no-op':>7} "
        f"{'per CPU s':>10} {'/ peer':>7} {'RSS MB':>7}",
    ]

    def row(name: str, rate: float, per_cpu: float | None = None, mb: float | None = None) -> None:
        cpu_cells = (
            f"{per_cpu:>10,.0f} {per_cpu / cpu['peer']:>7.2f}"
            if per_cpu is not None
            else f"{'':>10} {'':>7}"
        )
        lines.append(
            f"{name:<42} {rate:>9,.0f} {rate / peer_rate:>7.2f} {rate / noop:>7.2f} "
            f"{cpu_cells} {'' if mb is None else f'{mb:.0f}':>7}"
        )

    row("plain confluent-kafka consumer, decoding", result["plain_consumer_decode_per_s"])
    row("Faust no-op agent (stream.events())", noop, cpu["noop"])
    for store, label in (("memory", "memory store"), ("rocksdb", "RocksDB store")):
        row(
            f"dedupe worker, {label}",
            result[f"dedupe_{store}_events_per_s"],
            cpu[store],
            rss[f"dedupe_{store}"],
        )
    row(f"{result['peer']} peer, RocksDB state", peer_rate, cpu["peer"], rss["peer"])
    if result["metrics_versions_per_s"] is not None:
        row("metrics worker (call versions/s)", result["metrics_versions_per_s"], mb=rss["metrics"])
    if result["rocksdb_rss_mb_1m_calls"] is not None:
        lines.append(
            f"RocksDB dedupe worker, {result['rss_calls']:,} calls in state: "
            f"peak RSS {result['rocksdb_rss_mb_1m_calls']:.0f} MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

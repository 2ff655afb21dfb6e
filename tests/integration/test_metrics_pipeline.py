"""Metrics end to end: Call versions on onoff.calls -> metrics worker -> onoff.user-call-metrics.

A generated day of traffic for 20 users, with several versions per call, some
delivered twice, some older ones again after newer, some moving the call to
another hour or user, is produced straight into the calls topic. The worker is
killed (SIGKILL) halfway and started again; the latest record of every window
must then equal a plain recomputation from each call's final version, and the
HTTP query must answer the same figures.

A second test moves event time past the retention: a late version is counted,
not applied, and the expiry timer drops the old windows.
"""

from __future__ import annotations

import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from processors.merge import new_call
from processors.metrics.tally import parse_share_key
from processors.partitioning import KeyPartitions
from processors.topology import contributions_topic
from schemas import AvroCodec, SchemaName
from schemas.topics import topic_partitions
from tests.integration.ingress_fixtures import read_topic
from tests.integration.processor_fixtures import Worker, WorkerFactory
from tests.unit.processors.test_metrics_aggregation import recompute

DAY = datetime(2026, 3, 2, tzinfo=UTC)
USERS = [(f"User{n:02d}@Example.com" if n % 5 else None, f"+1555010{n:04d}") for n in range(20)]
WORKER_ENV = {
    # The test topics have 3 partitions; the metrics tables must match onoff.calls.
    "ONOFF_BRIDGE_METRICS__PARTITIONS": "4",
    # Faust keeps a SIGKILLed member in the group for 60 s by default, and the next
    # worker's first rebalance waits that long; the tests shorten it.
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "10",
}


def millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def generate_day(rng: random.Random, calls: int = 300) -> list[dict[str, Any]]:
    """Every call's versions in delivery order: interleaved, repeated, sometimes late."""
    per_call: list[list[dict[str, Any]]] = []
    for n in range(calls):
        email, number = rng.choice(USERS)
        started = millis(DAY + timedelta(seconds=rng.randrange(24 * 3600)))
        updated = started
        versions = []
        fields: dict[str, Any] = {}
        for version in range(1, rng.randint(1, 4) + 1):
            if version == 1 or rng.random() < 0.2:  # a new hour, maybe a new day
                started = millis(DAY + timedelta(seconds=rng.randrange(-3600, 25 * 3600)))
            if version > 1 and rng.random() < 0.1:  # the call was someone else's
                email, number = rng.choice(USERS)
            status = rng.choice(["ANSWERED", "ANSWERED", "MISSED", "VOICEMAIL", "BUSY"])
            updated = millis(max(updated, started) + timedelta(seconds=rng.randint(1, 900)))
            fields = {
                "onoffUserEmail": email,
                "onoffUserNumber": number,
                "callStarted": started,
                "callDirection": rng.choice(["INBOUND", "OUTBOUND"]),
                "callStatus": status,
                "callDuration": rng.randint(0, 1800),
                "voicemailUrls": ["https://v.example/1.mp3"] if status == "VOICEMAIL" else [],
                "callRecordingUrls": ["https://r.example/1.mp3"] if rng.random() < 0.3 else [],
            }
            versions.append(
                new_call(f"c-{n:04d}")
                | fields
                | {
                    "version": version,
                    "deliveryCount": version,
                    "firstSeenAt": millis(started),
                    "lastUpdatedAt": updated,
                }
            )
        sequence = list(versions)
        for index, record in enumerate(versions):
            if rng.random() < 0.3:  # delivered again, at least once
                sequence.insert(rng.randint(index + 1, len(sequence)), record)
        per_call.append(sequence)
    # Interleave the calls, each keeping its own order.
    slots = [i for i, sequence in enumerate(per_call) for _ in sequence]
    rng.shuffle(slots)
    cursors = [0] * len(per_call)
    deliveries = []
    for i in slots:
        deliveries.append(per_call[i][cursors[i]])
        cursors[i] += 1
    return deliveries


def produce(endpoints: StackEndpoints, codec: AvroCodec, records: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap_servers, "acks": "all"})
    for record in records:
        producer.produce(codec.topic, key=record["id"].encode(), value=codec.encode(record))
        producer.poll(0)
    assert producer.flush(30) == 0


def latest_metrics(
    endpoints: StackEndpoints, codec: AvroCodec
) -> tuple[int, dict[str, dict[str, Any]]]:
    """How many records the topic holds, and the latest one of each window that counts a call."""
    latest: dict[str, dict[str, Any]] = {}
    messages = read_topic(endpoints.kafka_bootstrap_servers, codec.topic, timeout_s=10)
    for message in messages:
        latest[(message.key() or b"").decode()] = codec.decode(message.value() or b"")
    return len(messages), {k: v for k, v in latest.items() if v["callsTotal"]}


def wait_for(
    endpoints: StackEndpoints,
    codec: AvroCodec,
    expected: dict[str, Any],
    worker: Worker,
    timeout_s: float,
) -> dict[str, dict[str, Any]]:
    """The latest figures once they match, or once the worker has caught up and the
    output has stopped changing (then a mismatch is wrong, not slow), or at the deadline."""
    deadline = time.monotonic() + timeout_s
    stable = 0
    previous: tuple[int, dict[str, dict[str, Any]]] | None = None
    while True:
        count, latest = latest_metrics(endpoints, codec)
        if latest == expected or time.monotonic() > deadline:
            return latest
        # Caught up: this worker owns all 3 + 4 source partitions, none has a lag.
        partitions = worker.health()["partitions"]
        caught_up = len(partitions) == 7 and all(p["lag"] == 0 for p in partitions)
        stable = stable + 1 if caught_up and previous == (count, latest) else 0
        if stable >= 3:
            return latest
        previous = (count, latest)
        time.sleep(2)


# Both stores: the tables are read and written in bulk beside Faust, differently for each.
@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_day_of_versions_with_a_crash_in_the_middle_matches_the_recomputation(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
    store: str,
) -> None:
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    metrics = AvroCodec(registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics)
    deliveries = generate_day(random.Random(6))
    half = len(deliveries) // 2
    assert len({d["id"] for d in deliveries}) == 300 and len(deliveries) > 600

    env = WORKER_ENV | {"ONOFF_BRIDGE_STORE": store}
    produce(endpoints, calls, deliveries[:half])
    first = workers.start("metrics", wait=True, **env)
    deadline = time.monotonic() + 30
    while not latest_metrics(endpoints, metrics)[0] and time.monotonic() < deadline:
        time.sleep(0.2)
    first.stop(signal.SIGKILL)  # somewhere in the middle of the first half
    produce(endpoints, calls, deliveries[half:])
    second = workers.start("metrics", wait=True, **env)

    expected = recompute(deliveries)
    latest = wait_for(endpoints, metrics, expected, second, timeout_s=180)
    assert len(expected) > 200
    assert sorted(latest) == sorted(expected)
    wrong = {
        key: {
            f: (latest[key][f], expected[key][f])
            for f in expected[key]
            if latest[key][f] != expected[key][f]
        }
        for key in expected
        if latest[key] != expected[key]
    }
    assert not wrong, f"windows whose figures differ (got, expected): {wrong}"

    # The HTTP query answers the same figures, for a user by email and one by number.
    for user in ("user01@example.com", "+15550100005"):
        for granularity in ("day", "hour"):
            response = httpx.get(
                f"http://127.0.0.1:{second.web_port}/users/{user}/metrics",
                params={"granularity": granularity, "from": "2026-03-01", "to": "2026-03-03T23:59"},
                timeout=5,
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            want = sorted(
                (r["windowStart"].isoformat(), r["callsTotal"], r["talkSecondsTotal"], r["missed"])
                for r in expected.values()
                if r["userKey"] == user and r["granularity"] == granularity
            )
            got = sorted(
                (w["windowStart"], w["callsTotal"], w["talkSecondsTotal"], w["missed"])
                for w in answer["windows"]
            )
            assert want and got == want
    bad = httpx.get(
        f"http://127.0.0.1:{second.web_port}/users/x/metrics?granularity=week", timeout=5
    )
    assert bad.status_code == 400

    # The contributions topic: one message per partition and batch, many users in one,
    # each user in the partition a record keyed by that user would have gone to.
    topic = contributions_topic(f"{workers.app_id_prefix}-metrics")
    kafka = {"bootstrap.servers": endpoints.kafka_bootstrap_servers}
    partition_of = KeyPartitions(topic_partitions(kafka, topic))
    messages = read_topic(endpoints.kafka_bootstrap_servers, topic, timeout_s=10)
    users_per_message = []
    for message in messages:
        users = {
            window.rsplit("/", 2)[0] for window, _, _ in orjson.loads(message.value() or b"")["u"]
        }
        assert {partition_of(user) for user in users} == {message.partition()}
        users_per_message.append(len(users))
    assert max(users_per_message) > 1


def test_a_version_past_the_retention_is_counted_not_applied_and_old_windows_expire(
    endpoints: StackEndpoints,
    registry: SchemaRegistryClient,
    topic_names: TopicNames,
    workers: WorkerFactory,
) -> None:
    calls = AvroCodec(registry, SchemaName.CALL, topic_names.calls)
    metrics = AvroCodec(registry, SchemaName.USER_CALL_METRICS, topic_names.user_call_metrics)
    user = "+15550109999"
    old_day, recent_day = DAY, DAY + timedelta(days=3)

    def version(call_id: str, started: datetime, updated: datetime, **fields: Any) -> Any:
        return (
            new_call(call_id)
            | {
                "onoffUserNumber": user,
                "callStarted": started,
                "callDirection": "INBOUND",
                "callStatus": "ANSWERED",
                "callDuration": 60,
                "version": 1,
                "deliveryCount": 1,
                "firstSeenAt": started,
                "lastUpdatedAt": updated,
            }
            | fields
        )

    def day_windows(worker: Worker, day: datetime) -> list[dict[str, Any]] | None:
        """The user's day windows; None while the worker answers 503 (still joining)."""
        response = httpx.get(
            f"http://127.0.0.1:{worker.web_port}/users/{user}/metrics",
            params={"granularity": "day", "from": day.isoformat(), "to": day.isoformat()},
            timeout=5,
        )
        if response.status_code == 503:
            return None
        assert response.status_code == 200, response.text
        windows: list[dict[str, Any]] = response.json()["windows"]
        return windows

    def wait_until(condition: Any, what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            time.sleep(0.3)

    old_start = old_day + timedelta(hours=9)
    recent_start = recent_day + timedelta(hours=9)
    produce(endpoints, calls, [version("c-old", old_start, old_start + timedelta(minutes=5))])
    worker = workers.start(
        "metrics",
        wait=True,
        **WORKER_ENV,
        ONOFF_BRIDGE_METRICS__RETENTION_DAYS="1",
        ONOFF_BRIDGE_METRICS__EXPIRY_GRACE_HOURS="0",
        ONOFF_BRIDGE_METRICS__EXPIRY_INTERVAL_S="0.5",
    )
    wait_until(lambda: len(day_windows(worker, old_day) or ()) == 1, "the old day is counted")

    # Event time moves three days on: the old day's windows are now past the retention.
    produce(endpoints, calls, [version("c-new", recent_start, recent_start + timedelta(minutes=5))])
    wait_until(lambda: len(day_windows(worker, recent_day) or ()) == 1, "the recent day is counted")
    # A later version of the old call, ten times longer: too late to change its windows.
    produce(
        endpoints,
        calls,
        [
            version(
                "c-old",
                old_start,
                recent_start + timedelta(hours=1),
                version=2,
                deliveryCount=2,
                callDuration=600,
            )
        ],
    )

    def late_count() -> float:
        for line in worker.metrics().splitlines():
            if (
                line.startswith("onoff_processor_records_total{")
                and 'processor="metrics"' in line
                and 'outcome="late"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    wait_until(lambda: late_count() == 1, "the late version is counted")
    # The expiry timer drops the old day's windows; the recent day keeps its figures.
    wait_until(lambda: day_windows(worker, old_day) == [], "the old day's windows expire")
    recent_windows = day_windows(worker, recent_day)
    assert recent_windows is not None and len(recent_windows) == 1
    recent = recent_windows[0]
    assert (recent["callsTotal"], recent["talkSecondsTotal"]) == (1, 60)

    # The topic's last word on the old day is still the first version's figures.
    _, latest = latest_metrics(endpoints, metrics)
    old_records = [r for r in latest.values() if r["windowStart"] == old_day]
    assert [(r["granularity"], r["talkSecondsTotal"]) for r in old_records] == [("day", 60)]

    # The expiry dropped the old windows' tallies and the call's shares of them: the
    # windows changelog ends each of their keys with a tombstone.
    changelog = f"{workers.app_id_prefix}-metrics-metrics-windows-changelog"
    last: dict[str, bytes | None] = {}
    for message in read_topic(endpoints.kafka_bootstrap_servers, changelog, timeout_s=10):
        last[(message.key() or b"").decode()] = message.value()
    old_keys = [k for k in last if old_day.date().isoformat() in k]
    shares = [k for k in old_keys if parse_share_key(k) is not None]
    assert len(shares) == 2 and len(old_keys) == 4, sorted(last)
    assert all(last[k] is None for k in old_keys), {k: last[k] for k in old_keys}
    assert any(last[k] is not None for k in last if recent_day.date().isoformat() in k)

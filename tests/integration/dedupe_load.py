"""Load for the dedupe fault tests: generated deliveries, a paced producer, and the output checks.

`generate_deliveries` builds, deterministically from a seed, what Onoff sends for
many calls: the first CDR (or VM), exact retries, post-call updates with longer
notes and new tags, late retries of older bodies, re-sends that add nothing, and
RECORDING deliveries with a URL. Each is a `CallEvent` record as the ingress
writes it (ingest metadata included, `contentSha256` over the body as canonical
JSON, so exact repeats hash the same).

`PacedProducer` writes them to `onoff.cdr.raw` from a background thread with the
ingress's producer settings (idempotent, murmur2_random), so keys land in the
same partitions. `read_calls` reads `onoff.calls` back (read_committed) and
`check_call_log` verifies it against the calls computed here with the real fold.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from ingress.publisher import producer_config
from processors.merge import Outcome, content, fold
from schemas import AvroCodec, SchemaName
from tests.integration.ingress_fixtures import read_topic, topic_size
from tests.integration.processor_fixtures import Worker

CDR_PATH = "/v1/onoff/cdr"
# Onoff's samples are from March 2026; worker_env keeps such calls inside the retention.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

Record = dict[str, Any]

_USERS = [(f"User {n:02d}", f"user{n:02d}@example.com", f"+1555010{n:04d}") for n in range(1, 25)]
_TAGS = [
    ("t-billing", "Billing", "#32A8FF"),
    ("t-support", "Support", "#7ED321"),
    ("t-sales", "Sales", "#F5A623"),
    ("t-urgent", "Urgent", "#D0021B"),
    ("t-followup", "Follow-up", "#9013FE"),
    ("t-vip", "VIP", "#4A4A4A"),
]
_NOTE_WORDS = ("invoice", "contract", "refund", "demo", "upgrade", "callback", "quote")


def content_sha256(body: Mapping[str, Any]) -> str:
    """What the ingress computes: SHA-256 of the body as canonical JSON, nulls dropped."""
    canonical = orjson.dumps(
        {k: v for k, v in body.items() if v is not None}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _millis(moment: datetime) -> datetime:
    """Avro timestamp-millis keeps milliseconds: so do the generated times."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


_TEXT_FIELDS = (
    "eventName",
    "onoffUserName",
    "onoffUserEmail",
    "onoffUserNumber",
    "externalNumber",
    "externalName",
    "externalEmail",
    "callDirection",
    "callStatus",
    "callNotes",
    "voicemailUrl",
    "callRecordingUrl",
)
_TIME_FIELDS = ("callStarted", "callEnded")
_INTEGER_FIELDS = ("callDuration", "voicemailDuration")
_NAMED_FIELDS = {"id", "tags", *_TEXT_FIELDS, *_TIME_FIELDS, *_INTEGER_FIELDS}


def call_event(body: Mapping[str, Any], received_at: datetime, request_id: str) -> Record:
    """The CallEvent record the ingress would publish for one JSON body."""
    record: Record = {"id": body["id"]}
    record |= {name: body.get(name) for name in (*_TEXT_FIELDS, *_INTEGER_FIELDS)}
    for name in _TIME_FIELDS:
        value = body.get(name)
        record[name] = None if value is None else datetime.fromisoformat(value)
    tags = body.get("tags")
    record["tags"] = None if tags is None else [dict(tag) for tag in tags]
    extra = {k: v for k, v in body.items() if k not in _NAMED_FIELDS and v is not None}
    record["extraJson"] = (
        orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode() if extra else None
    )
    record["ingest"] = {
        "receivedAt": _millis(received_at),
        "requestId": request_id,
        "contentSha256": content_sha256(body),
        "apiKeyName": "primary",
        "path": CDR_PATH,
    }
    return record


def _notes(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_NOTE_WORDS) for _ in range(words)).capitalize() + "."


def _tag(index: int) -> dict[str, str]:
    tag_id, name, colour = _TAGS[index]
    return {"tagId": tag_id, "tagName": name, "tagColor": colour}


def _call_deliveries(
    rng: random.Random, call_id: str, index: int
) -> list[tuple[datetime, dict[str, Any]]]:
    """(receivedAt, body) of every delivery of one call, in no particular order."""
    user = rng.choice(_USERS)
    started = T0 + timedelta(seconds=index * 3 + rng.randint(0, 2))
    duration = rng.randint(0, 1500)
    ended = started + timedelta(seconds=duration)
    status = rng.choices(["ANSWERED", "MISSED", "VOICEMAIL", "BUSY"], [70, 15, 10, 5])[0]
    first: dict[str, Any] = {
        "id": call_id,
        "eventName": "VM" if status == "VOICEMAIL" else "CDR",
        "onoffUserName": user[0],
        "onoffUserEmail": user[1],
        "onoffUserNumber": user[2],
        "externalNumber": f"+1555019{rng.randint(0, 9999):04d}",
        "externalName": rng.choice([None, None, f"Contact {index}"]),
        "callStarted": _iso(started),
        "callEnded": _iso(ended),
        "callDuration": duration if status == "ANSWERED" else 0,
        "callDirection": rng.choice(["INBOUND", "OUTBOUND"]),
        "callStatus": status,
        "callNotes": rng.choice([None, _notes(rng, 3)]),
        "tags": [_tag(i) for i in sorted(rng.sample(range(3), rng.randint(0, 2)))] or None,
    }
    if status == "VOICEMAIL":
        first["voicemailUrl"] = f"https://media.example.com/vm/{call_id}.mp3"
        first["voicemailDuration"] = rng.randint(3, 90)
    if rng.random() < 0.2:
        first["onoffLineId"] = f"line-{rng.randint(1, 5)}"  # a field the schema does not name

    def at(seconds: float) -> datetime:
        return ended + timedelta(seconds=seconds, milliseconds=rng.randint(0, 999))

    out = [(at(1), first)]
    if rng.random() < 0.7:  # the sender retries the same body
        out.append((at(rng.uniform(3, 40)), dict(first)))
    latest = first
    if rng.random() < 0.7:  # post-call update: longer notes, a new tag
        update = dict(first)
        update["callNotes"] = ((first["callNotes"] or "") + " " + _notes(rng, 5)).strip()
        update["tags"] = [*(first["tags"] or []), _tag(rng.randint(3, 5))]
        out.append((at(300), update))
        latest = update
        if rng.random() < 0.3:
            out.append((at(rng.uniform(302, 330)), dict(update)))
        if rng.random() < 0.25:  # a second update, more notes again
            again = dict(update)
            again["callNotes"] = update["callNotes"] + " " + _notes(rng, 4)
            out.append((at(rng.uniform(331, 360)), again))
            latest = again
    if rng.random() < 0.5:  # a late retry of the first body, after the updates
        out.append((at(rng.uniform(361, 700)), dict(first)))
    if status == "ANSWERED" and rng.random() < 0.6:  # the recording, minutes after the call
        recording = dict(latest) | {
            "eventName": "RECORDING",
            "callRecordingUrl": f"https://media.example.com/rec/{call_id}.mp3",
        }
        out.append((at(rng.uniform(400, 480)), recording))
        if rng.random() < 0.4:
            out.append((at(rng.uniform(481, 520)), dict(recording)))
    if rng.random() < 0.2:  # a re-send that brings nothing new: a new hash, no new version
        partial = {k: v for k, v in first.items() if k not in ("callNotes", "tags", "externalName")}
        out.append((at(rng.uniform(701, 900)), partial))
    return out


def generate_deliveries(calls: int, seed: int) -> list[Record]:
    """CallEvent records for `calls` calls, in the order they are to be produced (receivedAt)."""
    rng = random.Random(seed)
    timed: list[tuple[datetime, str, dict[str, Any]]] = []
    for index in range(calls):
        call_id = f"c-{seed}-{index:05d}"
        for received, body in _call_deliveries(rng, call_id, index):
            timed.append((_millis(received), call_id, body))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [
        call_event(body, received, f"req-{seed}-{n:06d}")
        for n, (received, _, body) in enumerate(timed)
    ]


def roundtrip(codec: AvroCodec, records: Iterable[Record]) -> list[Record]:
    """The records as the worker reads them (timestamps in milliseconds, nulls filled in)."""
    return [codec.decode(codec.encode(record)) for record in records]


def expected_calls(deliveries: Sequence[Record]) -> dict[str, Record]:
    """Every call's final state: its deliveries folded in production order with the real fold."""
    calls: dict[str, Record] = {}
    for delivery in deliveries:
        outcome, call = fold(calls.get(delivery["id"]), delivery)
        if outcome is Outcome.NEW_VERSION:
            calls[delivery["id"]] = call
    return calls


class PacedProducer(threading.Thread):
    """Produces records at a steady pace from a background thread, as the ingress would."""

    def __init__(
        self,
        bootstrap_servers: str,
        codec: AvroCodec,
        records: Sequence[Record],
        per_second: float,
        hold_at: int | None = None,
    ) -> None:
        """`hold_at`: produce that many records, then wait for `release()` to go on."""
        super().__init__(name="paced-producer", daemon=True)
        self._hold_at = hold_at
        self._released = threading.Event()
        self._stopped = threading.Event()
        self._producer = Producer(producer_config(bootstrap_servers, message_timeout_ms=30_000))
        self._values = [(r["id"].encode(), codec.encode(r)) for r in records]
        self._topic = codec.topic
        self._per_second = per_second
        self._lock = threading.Lock()
        self.produced = 0
        self.errors: list[str] = []
        self.undelivered = 0

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            with self._lock:
                self.errors.append(str(error))

    def run(self) -> None:
        start = time.monotonic()
        try:
            for n, (key, value) in enumerate(self._values):
                if self._stopped.is_set():
                    break
                if n == self._hold_at:
                    self._producer.flush(30)
                    while not self._released.wait(0.1):
                        self._producer.poll(0)
                    start = time.monotonic() - n / self._per_second
                delay = start + n / self._per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._producer.produce(
                    self._topic, key=key, value=value, on_delivery=self._on_delivery
                )
                self._producer.poll(0)
                self.produced = n + 1
            self.undelivered = int(self._producer.flush(30))
        except Exception as exc:  # reported by finish(), in the test's thread
            with self._lock:
                self.errors.append(f"producer thread: {exc!r}")
        finally:
            self._producer.close()

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        """Stops producing (a test that failed half-way); idempotent."""
        self._stopped.set()
        self._released.set()
        if self.is_alive():
            self.join(60)

    def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.produced < count and self.is_alive():
            assert time.monotonic() < deadline, f"only {self.produced}/{count} produced"
            time.sleep(0.05)

    def finish(self, timeout_s: float = 60.0) -> None:
        self.join(timeout_s)
        assert not self.is_alive(), "the producer did not finish"
        assert not self.errors and not self.undelivered, (self.errors[:5], self.undelivered)


def produce_all(bootstrap_servers: str, codec: AvroCodec, records: Sequence[Record]) -> None:
    """Produces every record now and waits until the broker has them all."""
    producer = PacedProducer(bootstrap_servers, codec, records, per_second=1e9)
    producer.start()
    producer.finish()


def read_calls(bootstrap_servers: str, registry: SchemaRegistryClient, topic: str) -> list[Record]:
    """Every committed Call record of the topic, partition by partition, in offset order."""
    codec = AvroCodec(registry, SchemaName.CALL, topic)
    messages = read_topic(bootstrap_servers, topic, timeout_s=30)
    messages.sort(key=lambda m: (m.partition() or 0, m.offset() or 0))
    return [codec.decode(m.value() or b"") for m in messages]


@dataclass
class CallLog:
    """What onoff.calls says: each call's versions, first copies, and repeats."""

    records: int = 0
    first_copies: dict[tuple[str, int], Record] = field(default_factory=dict)
    repeats: int = 0
    differing_repeats: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, records: Iterable[Record]) -> CallLog:
        log = cls()
        for record in records:
            log.records += 1
            key = (record["id"], record["version"])
            first = log.first_copies.setdefault(key, record)
            if first is not record:
                log.repeats += 1
                if record != first:
                    log.differing_repeats.append(_difference(key, first, record))
        return log

    def versions(self) -> dict[str, list[int]]:
        by_call: dict[str, list[int]] = {}
        for call_id, version in sorted(self.first_copies):
            by_call.setdefault(call_id, []).append(version)
        return by_call

    def finals(self) -> dict[str, Record]:
        return {
            call_id: self.first_copies[(call_id, max(versions))]
            for call_id, versions in self.versions().items()
        }


def _difference(key: tuple[str, int], first: Record, again: Record) -> str:
    fields = sorted(k for k in first.keys() | again.keys() if first.get(k) != again.get(k))
    detail = ", ".join(f"{k}: {first.get(k)!r} then {again.get(k)!r}" for k in fields[:3])
    return f"{key[0]} v{key[1]} re-emitted differently ({detail})"


def call_problems(log: CallLog, expected: Mapping[str, Record]) -> list[str]:
    """Everything wrong with the output: gaps, differing repeats, missing or wrong final states."""
    problems = list(log.differing_repeats)
    versions = log.versions()
    for call_id, numbers in versions.items():
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(
                f"{call_id}: versions {numbers}, expected 1..{max(numbers)} without gaps"
            )
    problems += [
        f"{call_id}: no record at all" for call_id in sorted(expected.keys() - versions.keys())
    ]
    problems += [
        f"{call_id}: not a produced call" for call_id in sorted(versions.keys() - expected.keys())
    ]
    finals = log.finals()
    for call_id in sorted(expected.keys() & finals.keys()):
        want, got = expected[call_id], finals[call_id]
        if (content(got), got["version"], got["deliveryCount"]) != (
            content(want),
            want["version"],
            want["deliveryCount"],
        ):
            problems.append(
                f"{call_id}: final v{got['version']} (deliveries {got['deliveryCount']}) != "
                f"expected v{want['version']} (deliveries {want['deliveryCount']}); "
                + _difference((call_id, got["version"]), want, got)
            )
    return problems


def produce_raw(
    bootstrap_servers: str, topic: str, key: bytes, values: Sequence[bytes]
) -> list[tuple[int, int]]:
    """Produces raw values under one key, in order; returns each one's (partition, offset)."""
    placed: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            placed.append((message.partition() or 0, message.offset() or 0))

    producer = Producer(producer_config(bootstrap_servers, message_timeout_ms=30_000))
    try:
        for value in values:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        assert producer.flush(30) == 0, "records left unsent"
    finally:
        producer.close()
    assert not errors, errors
    return placed


def source_progress(workers: Sequence[Worker], source_topic: str) -> dict[int, dict[str, Any]]:
    """The /healthz partition reports of `source_topic` from every live worker, by partition."""
    found: dict[int, dict[str, Any]] = {}
    for worker in workers:
        if worker.process.poll() is not None:
            continue
        try:
            report = worker.health()
        except httpx.HTTPError:
            continue
        for partition in report["partitions"]:
            if partition["topic"] == source_topic:
                found[partition["partition"]] = partition | {"worker": worker.web_port}
    return found


def processed_offsets(worker: Worker, source_topic: str) -> dict[int, int]:
    """Per source partition, the offset after the last record this worker processed itself."""
    progress = source_progress([worker], source_topic)
    return {p: r["last_offset"] + 1 for p, r in progress.items() if r["last_offset"] >= 0}


def beyond(offsets: Mapping[int, int], base: Mapping[int, int]) -> int:
    """How many records `offsets` are past `base`, summed over partitions."""
    return sum(max(0, offset - base.get(p, 0)) for p, offset in offsets.items())


def wait_until_processed(
    worker: Worker, source_topic: str, base: Mapping[int, int], count: int, timeout_s: float = 60.0
) -> dict[int, int]:
    """Until the worker has processed `count` records past `base`; returns its offsets."""
    deadline = time.monotonic() + timeout_s
    while True:
        offsets = processed_offsets(worker, source_topic)
        if beyond(offsets, base) >= count:
            return offsets
        assert time.monotonic() < deadline, (
            f"worker processed {beyond(offsets, base)} < {count} records past {base} "
            f"in {timeout_s}s\n{worker.tail()}"
        )
        time.sleep(0.05)


def wait_until_lag_at_most(
    worker: Worker, source_topic: str, lag: int, timeout_s: float = 60.0
) -> None:
    """Until the worker's /healthz lag, summed over its source partitions, is at most `lag`."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress = source_progress([worker], source_topic)
        lags = [p["lag"] for p in progress.values()]
        if lags and None not in lags and sum(lags) <= lag:
            return
        assert time.monotonic() < deadline, f"lag stays above {lag}: {progress}"
        time.sleep(0.05)


def committed_offsets(
    bootstrap_servers: str, group: str, topic: str, partitions: int
) -> dict[int, int]:
    """The group's committed offset of each partition of `topic` (0 when there is none)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False}
    )
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: max(tp.offset, 0) for tp in committed}
    finally:
        consumer.close()


def wait_caught_up(
    workers: Sequence[Worker],
    bootstrap_servers: str,
    source_topic: str,
    output_topic: str,
    partitions: int,
    timeout_s: float = 60.0,
    quiet_s: float = 2.0,
) -> dict[int, dict[str, Any]]:
    """Until /healthz shows lag 0 on every source partition and the output stopped growing."""
    deadline = time.monotonic() + timeout_s
    size, steady_since = -1, time.monotonic()
    while True:
        progress = source_progress(workers, source_topic)
        caught_up = len(progress) == partitions and all(p["lag"] == 0 for p in progress.values())
        now_size = topic_size(bootstrap_servers, output_topic)
        if not caught_up or now_size != size:
            size, steady_since = now_size, time.monotonic()
        elif time.monotonic() - steady_since >= quiet_s:
            return progress
        if time.monotonic() > deadline:
            tails = "\n".join(w.tail(10) for w in workers if w.process.poll() is None)
            raise AssertionError(
                f"not caught up after {timeout_s}s: /healthz says {progress}, "
                f"{output_topic} holds {now_size}\n{tails}"
            )
        time.sleep(0.5)

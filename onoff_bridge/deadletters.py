"""`onoff-bridge deadletter list` and `replay`: what was quarantined, and sending it again.

Which dead letters are replayable:

- **source `ingress`** (a webhook body the ingress refused): yes. The body is
  judged by the ingress's current validation (`WebhookRoute.accept`, the very
  method every request goes through) and, if it passes now, written to its
  raw topic as the ingress would: same key, same content hash, the original
  `receivedAt` and API key name.
- **source `dedupe`** (a record of onoff.cdr.raw dedupe could not use): yes,
  when its bytes now decode as a `CallEvent` and the call is within dedupe's
  current retention (`ONOFF_BRIDGE_DEDUPE_RETENTION_DAYS`); the record goes
  back to onoff.cdr.raw unchanged. Registry outages are waited out, never
  dead-lettered, so a decode failure usually stays one.
- **source `metrics` or `recordings`** (a record of onoff.calls they could
  not decode): no. onoff.calls is dedupe's table changelog, which nothing else
  may write; the call's next version is read again, or its raw deliveries can
  be replayed through a new dedupe.

Idempotence. Each replayed record carries a header `onoff-replay-id`, derived
from the dead letter alone: `<request id>.replay-<sha256(body)[:16]>` (for an
ingress body also its `ingest.requestId`). Before writing, replay reads the
target partition of the raw topic from the dead letter's own timestamp to its
end (a replayed record is stamped no earlier than its dead letter) and skips
every dead letter whose replay id is already there. So replays run one after
another write each dead letter (and copies of it with the same request id and
body) to its raw topic at most once. Two replays running at the same moment
can both write it; dedupe then drops the second copy by its content hash, so
onoff.calls is unchanged.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from ingress.errors import PayloadRejectedError
from ingress.publisher import producer_config
from ingress.routes import WebhookRoute
from ingress.webhooks import IngestMetadata
from onoff_bridge.partitions import PartitionReader, Progress
from processors.merge import anchor_with
from processors.partitioning import partition_for
from processors.settings import ProcessorSettings
from schemas import AvroCodec, RecordDecodeError, SchemaName, registry_client
from schemas.preflight import check_kafka, check_registry
from schemas.redaction import redact_reason
from schemas.settings import BridgeSettings, TopicNames

REPLAY_HEADER = "onoff-replay-id"
# The seek for --since starts this much earlier than asked: a dead letter's Kafka
# timestamp and its receivedAt come from two clocks; the filter itself is exact.
SINCE_MARGIN = timedelta(hours=1)
WRITE_TIMEOUT_S = 60.0
_AGE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    request_id: str
    received_at: datetime
    source: str
    path: str
    reason: str
    body: bytes
    api_key_name: str | None

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def replay_id(self) -> str:
        """Derived from the dead letter alone, so every replay of it computes the same."""
        return f"{self.request_id}.replay-{hashlib.sha256(self.body).hexdigest()[:16]}"

    @classmethod
    def from_record(
        cls, record: dict[str, Any], partition: int, offset: int, ts: int
    ) -> DeadLetter:
        return cls(
            partition=partition,
            offset=offset,
            timestamp_ms=ts,
            request_id=record["requestId"],
            received_at=record["receivedAt"],
            source=record["source"],
            path=record["path"],
            reason=record["reason"],
            body=record["body"],
            api_key_name=record.get("apiKeyName"),
        )


@dataclass
class DeadLetterScan:
    letters: list[DeadLetter]
    unreadable: int = 0


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `36h`, `7d` (an age), or an ISO-8601 date or date-time (UTC when no offset)."""
    match = _AGE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected an age (30m, 36h, 7d) or an ISO-8601 date-time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_deadletters(
    reader: PartitionReader,
    codec: AvroCodec,
    since: datetime | None = None,
    ids: Collection[str] | None = None,
) -> DeadLetterScan:
    """The dead letters received at or after `since` (all when None), with one of `ids`."""
    topic = codec.topic
    scan = DeadLetterScan([])
    for partition in range(reader.partition_count(topic)):
        start = None
        if since is not None:
            start = reader.offset_at(topic, partition, _millis(since - SINCE_MARGIN))
        for read in reader.read(topic, partition, start):
            try:
                record = codec.decode(read.value or b"")
            except RecordDecodeError:
                scan.unreadable += 1
                continue
            letter = DeadLetter.from_record(record, read.partition, read.offset, read.timestamp_ms)
            if since is not None and letter.received_at < since:
                continue
            if ids is not None and letter.request_id not in ids:
                continue
            scan.letters.append(letter)
    scan.letters.sort(key=lambda letter: (letter.received_at, letter.partition, letter.offset))
    return scan


def describe(letter: DeadLetter) -> str:
    """One line for `list`: no value from the body, whatever the reason quotes."""
    return "  ".join(
        [
            letter.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            f"{letter.source:10}",
            f"{letter.path:16}",
            f"{human_size(letter.size):>9}",
            letter.request_id,
            f"key={letter.api_key_name or '-'}",
            redact_reason(letter.reason),
        ]
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


class Verdict(enum.StrEnum):
    MOVED = "moved"
    WOULD_MOVE = "would move"
    ALREADY = "already replayed"
    STILL_FAILS = "still fails"
    NOT_REPLAYABLE = "not replayable"
    NOT_WRITTEN = "not written"


@dataclass(frozen=True)
class Resubmission:
    """A dead letter that passes today: what to write, and where."""

    letter: DeadLetter
    topic: str
    key: str
    value: bytes


@dataclass(frozen=True)
class ReplayOutcome:
    letter: DeadLetter
    verdict: Verdict
    # Where it went or already is, the redacted reason it still fails, or why it is not replayable.
    detail: str
    key: str | None = None

    def line(self) -> str:
        letter = self.letter
        parts = [f"{self.verdict.value:16}", letter.request_id, f"{letter.source}", letter.path]
        if self.key is not None:
            parts.append(f"id {self.key}")
        return "  ".join([*parts, self.detail])


class RecordDecoder(Protocol):
    """An `AvroCodec`'s reading side."""

    topic: str

    def decode(self, data: bytes) -> dict[str, Any]: ...


class Judge:
    """Today's verdict on a dead letter: the ingress's validation, or dedupe's decode, retention."""

    def __init__(
        self,
        routes: Sequence[WebhookRoute],
        call_events: RecordDecoder,
        topics: TopicNames,
        dedupe_retention: timedelta,
        now: datetime,
    ) -> None:
        self._routes = {route.path: route for route in routes}
        self._call_events = call_events
        self._topics = topics
        self._retention = dedupe_retention
        self._now = now

    def __call__(self, letter: DeadLetter) -> Resubmission | ReplayOutcome:
        if letter.source == "ingress":
            return self._ingress(letter)
        if letter.source == "dedupe" and letter.path == self._topics.cdr_raw:
            return self._dedupe(letter)
        if letter.path == self._topics.calls:
            why = (
                f"{letter.path} is dedupe's table changelog, which only dedupe writes; "
                "the call's next version is read again"
            )
        else:
            why = f"no replay is defined for source {letter.source}"
        return ReplayOutcome(letter, Verdict.NOT_REPLAYABLE, why)

    def _ingress(self, letter: DeadLetter) -> Resubmission | ReplayOutcome:
        route = self._routes.get(letter.path)
        if route is None:
            return ReplayOutcome(letter, Verdict.NOT_REPLAYABLE, "no webhook route has this path")
        meta = IngestMetadata(letter.received_at, letter.replay_id, letter.api_key_name, route.path)
        try:
            accepted = route.accept(letter.body, meta)
        except PayloadRejectedError as exc:
            return ReplayOutcome(letter, Verdict.STILL_FAILS, redact_reason(exc.reason))
        return Resubmission(letter, route.topic, accepted.key, accepted.value)

    def _dedupe(self, letter: DeadLetter) -> Resubmission | ReplayOutcome:
        try:
            event = self._call_events.decode(letter.body)
        except RecordDecodeError as exc:
            return ReplayOutcome(letter, Verdict.STILL_FAILS, redact_reason(str(exc)))
        if anchor_with(None, event) < self._now - self._retention:
            days = self._retention / timedelta(days=1)
            return ReplayOutcome(
                letter,
                Verdict.STILL_FAILS,
                f"the call is past the dedupe retention ({days:g} days)",
                event["id"],
            )
        return Resubmission(letter, self._call_events.topic, event["id"], letter.body)


def replay(
    letters: Iterable[DeadLetter],
    judge: Callable[[DeadLetter], Resubmission | ReplayOutcome],
    reader: PartitionReader,
    kafka_config: dict[str, str],
    dry_run: bool = False,
) -> list[ReplayOutcome]:
    """Judges every dead letter, skips those already replayed, writes the rest (unless dry)."""
    outcomes: list[ReplayOutcome] = []
    todo: list[tuple[Resubmission, int]] = []
    counts: dict[str, int] = {}
    for letter in letters:
        verdict = judge(letter)
        if isinstance(verdict, ReplayOutcome):
            outcomes.append(verdict)
            continue
        if verdict.topic not in counts:
            counts[verdict.topic] = reader.partition_count(verdict.topic)
        todo.append((verdict, partition_for(verdict.key, counts[verdict.topic])))
    present = _replayed(reader, todo)
    writes: list[tuple[Resubmission, int]] = []
    for resubmission, partition in todo:
        letter = resubmission.letter
        where = present.get(letter.replay_id)
        if where is not None:
            outcomes.append(ReplayOutcome(letter, Verdict.ALREADY, f"in {where}", resubmission.key))
            continue
        # Copies of one dead letter in this run: the first is written, the others are it.
        present[letter.replay_id] = f"{resubmission.topic}[{partition}] (this run)"
        writes.append((resubmission, partition))
    if dry_run:
        outcomes += [
            ReplayOutcome(r.letter, Verdict.WOULD_MOVE, f"to {r.topic}[{p}]", r.key)
            for r, p in writes
        ]
    else:
        outcomes += _write(writes, kafka_config)
    return sorted(
        outcomes, key=lambda o: (o.letter.received_at, o.letter.partition, o.letter.offset)
    )


def summary(outcomes: Iterable[ReplayOutcome]) -> str:
    counts = Counter(outcome.verdict for outcome in outcomes)
    return ", ".join(f"{counts[v]} {v.value}" for v in Verdict if counts[v]) or "nothing to replay"


def _replayed(reader: PartitionReader, todo: list[tuple[Resubmission, int]]) -> dict[str, str]:
    """replay id -> where it already is, for the partitions `todo` writes to.

    Each partition is read from the oldest dead letter's timestamp: its replay
    cannot have been written before the dead letter was (see `_write`).
    """
    since: dict[tuple[str, int], int] = {}
    for resubmission, partition in todo:
        place = (resubmission.topic, partition)
        since[place] = min(
            since.get(place, resubmission.letter.timestamp_ms), resubmission.letter.timestamp_ms
        )
    found: dict[str, str] = {}
    for (topic, partition), timestamp_ms in sorted(since.items()):
        start = reader.offset_at(topic, partition, timestamp_ms)
        for read in reader.read(topic, partition, start):
            replay_id = read.headers.get(REPLAY_HEADER)
            if replay_id is not None:
                found[replay_id.decode(errors="replace")] = f"{topic}[{partition}]@{read.offset}"
    return found


def _write(
    writes: list[tuple[Resubmission, int]], kafka_config: dict[str, str]
) -> list[ReplayOutcome]:
    """Writes as the ingress does (idempotent, acks=all), each to the partition its key maps to."""
    if not writes:
        return []
    producer = Producer(producer_config(kafka_config, int(WRITE_TIMEOUT_S * 1000) - 1000))
    results: dict[int, ReplayOutcome] = {}

    def reporter(
        index: int, resubmission: Resubmission
    ) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            letter = resubmission.letter
            if error is not None:
                results[index] = ReplayOutcome(
                    letter, Verdict.NOT_WRITTEN, error.str(), resubmission.key
                )
            else:
                where = f"to {message.topic()}[{message.partition()}]@{message.offset()}"
                results[index] = ReplayOutcome(letter, Verdict.MOVED, where, resubmission.key)

        return report

    now_ms = _millis(datetime.now(UTC))
    for index, (resubmission, partition) in enumerate(writes):
        letter = resubmission.letter
        producer.produce(
            resubmission.topic,
            key=resubmission.key.encode(),
            value=resubmission.value,
            partition=partition,
            # Never stamped before its dead letter, so `_replayed` can seek by time.
            timestamp=max(now_ms, letter.timestamp_ms),
            headers=[(REPLAY_HEADER, letter.replay_id.encode())],
            on_delivery=reporter(index, resubmission),
        )
        producer.poll(0)
    producer.flush(WRITE_TIMEOUT_S)
    for index, (resubmission, _) in enumerate(writes):
        results.setdefault(
            index,
            ReplayOutcome(
                resubmission.letter,
                Verdict.NOT_WRITTEN,
                f"no acknowledgement within {WRITE_TIMEOUT_S:.0f} s",
                resubmission.key,
            ),
        )
    return [results[index] for index in range(len(writes))]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def list_deadletters(
    settings: BridgeSettings,
    since: datetime | None,
    limit: int,
    progress: Progress | None = None,
) -> tuple[list[DeadLetter], DeadLetterScan]:
    """The `limit` most recent dead letters since `since`, and the whole scan."""
    with (
        connect(settings) as registry,
        PartitionReader(settings.kafka_config(), progress) as reader,
    ):
        codec = AvroCodec(registry, SchemaName.REJECTED_DELIVERY, settings.topics.deadletter)
        scan = read_deadletters(reader, codec, since)
    return scan.letters[-limit:] if limit > 0 else [], scan


def replay_deadletters(
    settings: ProcessorSettings,
    since: datetime | None,
    ids: Collection[str] | None,
    dry_run: bool,
    progress: Progress | None = None,
) -> tuple[list[ReplayOutcome], DeadLetterScan]:
    """Reads the chosen dead letters and replays them (see the module docstring)."""
    from ingress.bootstrap import webhook_routes

    topics = settings.topics
    with (
        connect(settings) as registry,
        PartitionReader(settings.kafka_config(), progress) as reader,
    ):
        judge = Judge(
            webhook_routes(registry, topics),
            AvroCodec(registry, SchemaName.CALL_EVENT, topics.cdr_raw),
            topics,
            timedelta(days=settings.dedupe_retention_days),
            datetime.now(UTC),
        )
        codec = AvroCodec(registry, SchemaName.REJECTED_DELIVERY, topics.deadletter)
        scan = read_deadletters(reader, codec, since, ids)
        outcomes = replay(scan.letters, judge, reader, settings.kafka_config(), dry_run)
    return outcomes, scan


def connect(settings: BridgeSettings) -> SchemaRegistryClient:
    """Kafka and the registry answer with these credentials (else one `SchemaError` line)."""
    check_kafka(settings.kafka_config(), settings.connect_timeout_s)
    check_registry(settings.registry_connection(), settings.connect_timeout_s)
    return registry_client(settings.registry_connection())

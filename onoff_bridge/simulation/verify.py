"""Checks every topic against a simulation's ledger; `run_verify` polls until they agree.

`check` is pure: the ledger, the records read so far and the digests of the
stored recordings read back from the store in, a report out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onoff_bridge.settings import BridgeSettings
from onoff_bridge.simulation.ledger import Ledger
from onoff_bridge.simulation.readback import ReadRecord, TopicReader
from onoff_bridge.simulation.stored import StoredObjects
from processors.merge import CONTENT_FIELDS, Outcome, fold
from processors.metrics.aggregation import Aggregator
from processors.metrics.figures import metrics_record
from processors.metrics.windows import UnplaceableCallError, Window, user_key

CALL_KINDS = {"call", "update", "recording"}


@dataclass(frozen=True)
class Checks:
    raw: bool = True
    calls: bool = True
    recordings: bool = True
    metrics: bool = True


@dataclass
class Report:
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class TopicRecords:
    cdr_raw: list[ReadRecord] = field(default_factory=list)
    sms_raw: list[ReadRecord] = field(default_factory=list)
    calls: list[ReadRecord] = field(default_factory=list)
    recordings: list[ReadRecord] = field(default_factory=list)
    metrics: list[ReadRecord] = field(default_factory=list)
    deadletters: list[ReadRecord] = field(default_factory=list)

    def rejected_by(self, source: str) -> set[tuple[int, int]]:
        """(partition, offset) of each source record a processor dead-lettered."""
        return {
            (r.value["sourcePartition"], r.value["sourceOffset"])
            for r in self.deadletters
            if r.value["source"] == source and r.value.get("sourceOffset") is not None
        }

    # storage URI -> sha256 of the bytes the store holds there (or "unreadable: ...")
    stored: dict[str, str] = field(default_factory=dict)


def check(ledger: Ledger, topics: TopicRecords, checks: Checks = Checks()) -> Report:
    report = Report()
    _check_raw(ledger, topics, report, checks.raw)
    finals = _check_calls(ledger, topics, report) if checks.calls or checks.metrics else {}
    if not checks.calls:
        report.problems = [p for p in report.problems if not p.startswith("calls:")]
    if checks.recordings:
        _check_recordings(ledger, topics, finals, report)
    if checks.metrics:
        _check_metrics(ledger, topics, report)
    return report


def _check_raw(ledger: Ledger, topics: TopicRecords, report: Report, enabled: bool) -> None:
    seen = {
        (r.value["id"], r.value["ingest"]["contentSha256"])
        for r in (*topics.cdr_raw, *topics.sms_raw)
    }
    accepted = [e for e in ledger.events.values() if ledger.accepted(e.seq)]
    missing = [e for e in accepted if (e.id, e.content_sha256) not in seen]
    report.notes.append(
        f"raw: {len(ledger.events)} events sent, {len(accepted)} answered 200, "
        f"{len(accepted) - len(missing)} of those found in their raw topic"
    )
    if enabled:
        for event in missing:
            report.problems.append(
                f"raw: event seq {event.seq} ({event.kind}, id {event.id}) was answered 200 "
                f"but is not in {'onoff.sms.raw' if event.kind == 'sms' else 'onoff.cdr.raw'}"
            )
    quarantined = [e.seq for e in ledger.events.values() if ledger.quarantined(e.seq)]
    if quarantined:
        report.notes.append(f"raw: quarantined by the ingress (dead letters): seqs {quarantined}")
    for seq, entry in sorted(ledger.gave_up.items()):
        sent = ledger.events.get(seq)
        landed = sent is not None and (sent.id, sent.content_sha256) in seen
        report.notes.append(
            f"gave up: seq {seq} id {entry['id']} after {entry['attempts']} attempts "
            f"(last {entry['last']}); {'stored anyway' if landed else 'lost, as Onoff drops it'}"
        )


def _check_calls(ledger: Ledger, topics: TopicRecords, report: Report) -> dict[str, dict[str, Any]]:
    """Versions 1..n with no gap or reset, repeats identical, final state = merge of the raw."""
    ids = {e.id for e in ledger.events.values() if e.kind in CALL_KINDS}
    raw_by_id: dict[str, list[dict[str, Any]]] = {}
    for record in topics.cdr_raw:
        if record.value["id"] in ids:
            raw_by_id.setdefault(record.value["id"], []).append(record.value)
    versions: dict[str, dict[int, dict[str, Any]]] = {}
    repeats = 0
    for record in topics.calls:
        call = record.value
        if call["id"] not in ids:
            continue
        seen = versions.setdefault(call["id"], {})
        version = int(call["version"])
        top = max(seen, default=0)
        if version in seen:
            repeats += 1
            if call != seen[version]:
                report.problems.append(
                    f"calls: {call['id']} version {version} repeated with other content"
                )
        elif version != top + 1:
            report.problems.append(
                f"calls: {call['id']} jumped from version {top} to {version} (gap or reset)"
            )
        seen[version] = call
    finals = {call_id: seen[max(seen)] for call_id, seen in versions.items()}
    refused = topics.rejected_by("dedupe")
    raw_positions: dict[str, set[tuple[int, int]]] = {}
    for record in topics.cdr_raw:
        raw_positions.setdefault(record.value["id"], set()).add((record.partition, record.offset))
    dead_lettered = 0
    for call_id, events in sorted(raw_by_id.items()):
        final = finals.get(call_id)
        if final is None and raw_positions[call_id] <= refused:
            dead_lettered += 1  # every delivery refused by dedupe (past its retention)
            continue
        expected = _merged(events)
        if final is None:
            report.problems.append(f"calls: {call_id} has {len(events)} raw deliveries but no call")
            continue
        wrong = [f for f in CONTENT_FIELDS if final.get(f) != expected.get(f)]
        if wrong:
            report.problems.append(
                f"calls: {call_id} version {final['version']} differs from the merge of its "
                f"deliveries in {', '.join(wrong)}"
            )
    report.notes.append(
        f"calls: {len(raw_by_id)} calls in onoff.cdr.raw, {len(finals)} in onoff.calls, "
        f"{sum(len(v) for v in versions.values())} versions, {repeats} records repeating one, "
        f"{dead_lettered} dead-lettered by dedupe"
    )
    return finals


def _merged(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    call: dict[str, Any] | None = None
    for event in events:
        outcome, folded = fold(call, event)
        if outcome is Outcome.NEW_VERSION:
            call = folded
    assert call is not None
    return call


def _check_recordings(
    ledger: Ledger, topics: TopicRecords, finals: Mapping[str, Mapping[str, Any]], report: Report
) -> None:
    by_link: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in topics.recordings:
        value = record.value
        by_link.setdefault((value["callId"], value["kind"], value["sourceUrl"]), []).append(value)
    field_of = {"recording": "callRecordingUrls", "voicemail": "voicemailUrls"}
    checked = stored = expired = 0
    for link in ledger.audio:
        final = finals.get(link["callId"])
        if final is None or link["url"] not in (final.get(field_of[link["kind"]]) or []):
            continue  # never delivered: nothing to fetch
        checked += 1
        records = by_link.get((link["callId"], link["kind"], link["url"]), [])
        name = f"recordings: {link['callId']}/{link['kind']}"
        if link["expires"]:
            if not any(r["status"] == "expired" for r in records):
                report.problems.append(
                    f"{name} expired but has no expired record ({_statuses(records)})"
                )
            else:
                expired += 1
            continue
        kept = {
            (r["storageUri"], r["fetchedAt"], r["sha256"])
            for r in records
            if r["status"] == "stored"
        }
        if not kept:
            report.problems.append(f"{name} was not stored ({_statuses(records)})")
        elif len(kept) > 1:
            report.problems.append(f"{name} was stored {len(kept)} times")
        elif (claimed := next(iter(kept)))[2] != link["sha256"]:
            report.problems.append(f"{name} stored with sha256 {claimed[2]}, not {link['sha256']}")
        elif (held := topics.stored.get(claimed[0], "not read back")) != link["sha256"]:
            report.problems.append(
                f"{name}: the store holds {held} at {claimed[0]}, not sha256 {link['sha256']}"
            )
        else:
            stored += 1
    report.notes.append(
        f"recordings: {checked} delivered links, {stored} stored right (read back from the "
        f"store), {expired} expired"
    )


def _statuses(records: list[dict[str, Any]]) -> str:
    return ", ".join(r["status"] for r in records) or "no record"


def _check_metrics(ledger: Ledger, topics: TopicRecords, report: Report) -> None:
    users = {
        key
        for e in ledger.events.values()
        if e.kind in CALL_KINDS and (key := user_key(e.body)) is not None
    }
    finals: dict[str, dict[str, Any]] = {}
    positions: dict[str, set[tuple[int, int]]] = {}
    for record in topics.calls:
        call = record.value
        positions.setdefault(call["id"], set()).add((record.partition, record.offset))
        if (
            user_key(call) in users
            and call["version"] >= finals.get(call["id"], {"version": 0})["version"]
        ):
            finals[call["id"]] = call
    refused = topics.rejected_by("metrics")
    aggregator = Aggregator()
    unplaceable = 0
    for call in finals.values():
        try:
            updates = aggregator.plan(call)
        except UnplaceableCallError:
            unplaceable += 1
            if not positions[call["id"]] & refused:
                report.problems.append(
                    f"metrics: {call['id']} cannot be placed and is not in the dead-letter topic"
                )
            continue
        for update in updates:
            aggregator.apply(update)
    expected = {
        key: metrics_record(Window.parse(key), f) for key, f in aggregator.figures().items()
    }
    latest: dict[str, dict[str, Any]] = {}
    for record in topics.metrics:
        if record.key is not None and Window.parse(record.key).user in users:
            latest[record.key] = record.value
    for key, want in sorted(expected.items()):
        got = latest.get(key)
        if got is None:
            report.problems.append(f"metrics: no record for {key}")
        elif diff := [f for f in want if got.get(f) != want[f]]:
            report.problems.append(
                f"metrics: {key} differs from the recomputation in {', '.join(diff)}"
            )
    for key, got in sorted(latest.items()):
        if key not in expected and got["callsTotal"]:
            report.problems.append(
                f"metrics: {key} counts {got['callsTotal']} calls, expected none"
            )
    report.notes.append(
        f"metrics: {len(expected)} windows recomputed, {len(latest)} in the topic, "
        f"{unplaceable} calls unplaceable (dead-lettered)"
    )


def stored_uris(ledger: Ledger, recordings: Iterable[ReadRecord]) -> set[str]:
    """Where the run's stored recordings are said to be: what `verify` reads back."""
    calls = {link["callId"] for link in ledger.audio}
    return {
        r.value["storageUri"]
        for r in recordings
        if r.value["status"] == "stored" and r.value["callId"] in calls and r.value["storageUri"]
    }


def run_verify(
    ledger: Ledger,
    settings: BridgeSettings,
    checks: Checks,
    timeout_s: float,
    poll_s: float = 2.0,
    say: Callable[[str], None] = print,
    store: StoredObjects | None = None,
) -> Report:
    """Reads the topics to their ends and checks; again every `poll_s` until all agree.

    `store` reads the stored recordings back (the local directory store of the
    default recordings settings when None)."""
    if store is None:
        from processors.recordings.settings import RecordingSettings

        store = StoredObjects(RecordingSettings())
    from schemas import AvroCodec, SchemaName, registry_client

    registry = registry_client(settings.registry_connection())
    names = settings.topics
    wanted = {
        "cdr_raw": (SchemaName.CALL_EVENT, names.cdr_raw, True),
        "sms_raw": (SchemaName.SMS_EVENT, names.sms_raw, True),
        "calls": (
            SchemaName.CALL,
            names.calls,
            checks.calls or checks.metrics or checks.recordings,
        ),
        "recordings": (SchemaName.RECORDING, names.recordings, checks.recordings),
        "metrics": (SchemaName.USER_CALL_METRICS, names.user_call_metrics, checks.metrics),
        "deadletters": (
            SchemaName.REJECTED_DELIVERY,
            names.deadletter,
            checks.calls or checks.metrics,
        ),
    }
    readers = {
        attr: TopicReader(settings.kafka_config(), topic, AvroCodec(registry, schema, topic))
        for attr, (schema, topic, needed) in wanted.items()
        if needed
    }
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            records = TopicRecords()
            for attr, reader in readers.items():
                reader.drain()
                setattr(records, attr, reader.records)
            if checks.recordings:
                uris = stored_uris(ledger, records.recordings)
                records.stored = {uri: store.digest(uri) for uri in uris}
            report = check(ledger, records, checks)
            if report.ok or time.monotonic() >= deadline:
                return report
            say(f"waiting: {len(report.problems)} mismatches so far, e.g. {report.problems[0]}")
            time.sleep(poll_s)
    finally:
        for reader in readers.values():
            reader.close()

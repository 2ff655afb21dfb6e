"""`onoff-bridge inspect call ID`: everything the topics hold about one call, for support.

Four reads, each of the partitions the call's keys live in (`partitions.py`):

1. onoff.cdr.raw, key = call id: every delivery (time, API key name, content
   hash, event kind) and what became of it: the version it made, a repeat
   dedupe dropped, or no version (it changed nothing, or was not read yet);
2. onoff.calls, key = call id: every version and what changed from the one
   before;
3. onoff.recordings, key = `<call id>/<kind>/<link digest>` for every link in
   any version: each link's fate (stored, expired, rejected, failed, or not
   handled yet), or that no delivery ever carried a link;
4. onoff.user-call-metrics, key = `<user>/<hour|day>/<start>` of the windows
   of every version: the windows the latest version counts in, with their
   latest figures, and the windows earlier versions were retracted from.

`build_report` is pure (records in, report out) and `render` turns the report
into lines. Personal fields (names, e-mails, numbers, notes, the fields
without a schema, the metrics' user key) are named but their values shown
only with `show_personal`; links are shown by digest, never the signed URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from onoff_bridge.deadletters import REPLAY_HEADER, connect
from onoff_bridge.partitions import PartitionReader, Progress, ReadRecord
from processors.merge import CONTENT_FIELDS
from processors.metrics.windows import Window, windows_of
from processors.partitioning import partition_for
from processors.recordings.processor import KINDS, link_digest, record_key
from schemas import AvroCodec, SchemaName
from schemas.settings import BridgeSettings, TopicNames

PERSONAL_FIELDS = frozenset(
    {
        "onoffUserName",
        "onoffUserEmail",
        "onoffUserNumber",
        "externalNumber",
        "externalName",
        "externalEmail",
        "callNotes",
        "extraJson",
    }
)
LINK_FIELDS = frozenset(KINDS.values())
HIDDEN = "(hidden: personal)"
METRIC_FIGURES = ("callsTotal", "inbound", "outbound", "answered", "missed", "voicemails")


@dataclass(frozen=True)
class Delivery:
    partition: int
    offset: int
    received_at: datetime
    api_key_name: str | None
    content_sha256: str
    event_name: str | None
    request_id: str
    replayed: bool
    # "version 2", "a repeat of offset 17: dropped", "no version: ..."
    fate: str = ""


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Version:
    partition: int
    offset: int
    number: int
    last_updated_at: datetime
    delivery_count: int
    changes: tuple[Change, ...]
    repeat: bool  # the same version again (a re-emission after a restart): identical


@dataclass(frozen=True)
class Link:
    kind: str
    digest: str
    first_version: int
    # The latest Recording record of this link, None when it has none yet.
    record: Mapping[str, Any] | None


@dataclass(frozen=True)
class WindowFigures:
    key: str
    counted: bool  # the latest version counts here; False: an earlier version did
    figures: Mapping[str, Any] | None


@dataclass
class CallReport:
    call_id: str
    deliveries: list[Delivery] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    windows: list[WindowFigures] = field(default_factory=list)
    # (topic, partition) of every partition read, in order.
    partitions_read: list[tuple[str, int]] = field(default_factory=list)


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[Change, ...]:
    """The content fields that differ; from an empty call for the first version."""
    found = []
    for name in CONTENT_FIELDS:
        old = None if before is None else before.get(name)
        new = after.get(name)
        if _empty(old) and _empty(new):
            continue
        if old != new:
            found.append(Change(name, old, new))
    return tuple(found)


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == ""


def build_report(
    call_id: str,
    raw: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
    calls: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
    recordings: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
    metrics: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
) -> CallReport:
    """The report from the decoded records of the call's partitions (other keys are ignored)."""
    report = CallReport(call_id)
    versions: dict[int, Mapping[str, Any]] = {}
    previous: Mapping[str, Any] | None = None
    for read, call in calls:
        if call["id"] != call_id:
            continue
        number = int(call["version"])
        repeat = number in versions
        report.versions.append(
            Version(
                read.partition,
                read.offset,
                number,
                call["lastUpdatedAt"],
                int(call["deliveryCount"]),
                () if repeat else changes(versions.get(number - 1, previous), call),
                repeat,
            )
        )
        if not repeat:
            versions[number] = call
            previous = call
    report.deliveries = _deliveries(call_id, raw, versions)
    report.links = _links(call_id, versions, recordings)
    report.windows = _windows(versions, metrics)
    return report


def _deliveries(
    call_id: str,
    raw: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
    versions: Mapping[int, Mapping[str, Any]],
) -> list[Delivery]:
    made_by: dict[str, int] = {}
    for number in sorted(versions):
        for digest in versions[number]["deliveryHashes"]:
            made_by.setdefault(digest, number)
    first_offset: dict[str, int] = {}
    deliveries = []
    for read, event in raw:
        if event["id"] != call_id:
            continue
        ingest = event["ingest"]
        digest = ingest["contentSha256"]
        if digest in first_offset:
            fate = f"a repeat of offset {first_offset[digest]}: dropped"
        elif digest in made_by:
            fate = f"version {made_by[digest]}"
        else:
            fate = "no version: it changed nothing, or dedupe has not read it yet"
        first_offset.setdefault(digest, read.offset)
        deliveries.append(
            Delivery(
                read.partition,
                read.offset,
                ingest["receivedAt"],
                ingest["apiKeyName"],
                digest,
                event.get("eventName"),
                ingest["requestId"],
                REPLAY_HEADER in read.headers,
                fate,
            )
        )
    return deliveries


def expected_links(versions: Mapping[int, Mapping[str, Any]]) -> dict[str, tuple[str, str, int]]:
    """Recording key -> (kind, url, first version carrying it), over every version."""
    links: dict[str, tuple[str, str, int]] = {}
    for number in sorted(versions):
        call = versions[number]
        for kind, name in KINDS.items():
            for url in call.get(name) or ():
                links.setdefault(record_key(call["id"], kind, url), (kind, url, number))
    return links


def _links(
    call_id: str,
    versions: Mapping[int, Mapping[str, Any]],
    recordings: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
) -> list[Link]:
    latest: dict[str, Mapping[str, Any]] = {}
    for read, record in recordings:
        if record["callId"] == call_id and read.key_text is not None:
            latest[read.key_text] = record
    links = []
    for key, (kind, url, first) in expected_links(versions).items():
        links.append(Link(kind, link_digest(url), first, latest.get(key)))
    return links


def expected_windows(versions: Mapping[int, Mapping[str, Any]]) -> dict[str, bool]:
    """Window key -> whether the latest version counts in it (else an earlier one did)."""
    if not versions:
        return {}
    latest = versions[max(versions)]
    counted = {window.key for window in windows_of(latest)}
    keys = {window.key for call in versions.values() for window in windows_of(call)}
    return {key: key in counted for key in sorted(keys)}


def _windows(
    versions: Mapping[int, Mapping[str, Any]],
    metrics: Iterable[tuple[ReadRecord, Mapping[str, Any]]],
) -> list[WindowFigures]:
    wanted = expected_windows(versions)
    latest: dict[str, Mapping[str, Any]] = {}
    for read, record in metrics:
        if read.key_text in wanted:
            latest[read.key_text] = record
    return [WindowFigures(key, counted, latest.get(key)) for key, counted in wanted.items()]


def read_call(
    reader: PartitionReader,
    topics: TopicNames,
    codecs: Mapping[str, AvroCodec],
    call_id: str,
) -> CallReport:
    """Reads the call's partitions of the four topics; `codecs` by topic name."""

    def decoded(topic: str, partition: int, keys: set[str]) -> list[tuple[ReadRecord, Any]]:
        return [
            (read, codecs[topic].decode(read.value))
            for read in reader.read(topic, partition)
            if read.value is not None and read.key_text in keys
        ]

    raw = decoded(
        topics.cdr_raw, partition_for(call_id, reader.partition_count(topics.cdr_raw)), {call_id}
    )
    calls = decoded(
        topics.calls, partition_for(call_id, reader.partition_count(topics.calls)), {call_id}
    )
    versions = {int(v["version"]): v for _, v in calls if v["id"] == call_id}
    recordings = _read_keys(reader, topics.recordings, set(expected_links(versions)), decoded)
    metrics = _read_keys(reader, topics.user_call_metrics, set(expected_windows(versions)), decoded)
    report = build_report(call_id, raw, calls, recordings, metrics)
    report.partitions_read = list(reader.partitions_read)
    return report


def _read_keys(
    reader: PartitionReader, topic: str, keys: set[str], decoded: Any
) -> list[tuple[ReadRecord, Any]]:
    if not keys:
        return []
    count = reader.partition_count(topic)
    found: list[tuple[ReadRecord, Any]] = []
    for partition in sorted({partition_for(key, count) for key in keys}):
        found += decoded(topic, partition, keys)
    return found


def render(report: CallReport, topics: TopicNames, show_personal: bool = False) -> list[str]:
    """The report as lines of text; personal values only with `show_personal`."""
    lines = [f"call {report.call_id}", ""]
    if not report.deliveries and not report.versions:
        read = ", ".join(f"{topic}[{partition}]" for topic, partition in report.partitions_read)
        return [
            *lines,
            f"nothing found: no delivery and no version with this id (read {read}).",
            f"Check the id; {topics.cdr_raw} keeps deliveries for its retention only.",
        ]
    lines.append(f"{topics.cdr_raw}: {_count(report.deliveries, 'delivery', 'deliveries')}")
    for d in report.deliveries:
        replayed = "  (replayed from the dead letters)" if d.replayed else ""
        lines.append(
            f"  {_time(d.received_at)}  key {d.api_key_name or '-':10} "
            f"sha256 {d.content_sha256[:16]}  {d.event_name or '-':10} "
            f"@{d.partition}/{d.offset}  -> {d.fate}{replayed}"
        )
    lines += ["", f"{topics.calls}: {_count(report.versions, 'version', 'versions')}"]
    for v in report.versions:
        deliveries = "delivery" if v.delivery_count == 1 else "deliveries"
        head = (
            f"  v{v.number}  {_time(v.last_updated_at)}  {v.delivery_count} {deliveries} folded"
            f"  @{v.partition}/{v.offset}"
        )
        if v.repeat:
            lines.append(f"{head}  (the same version again, identical: a re-emission)")
            continue
        lines.append(f"{head}  {'set' if v.number == 1 else 'changed'}:")
        lines += [f"      {_change(c, show_personal)}" for c in v.changes]
    lines += ["", f"{topics.recordings}: {_count(report.links, 'link', 'links')}"]
    if not report.links:
        lines.append(
            "  no version of the call carries a recording or voicemail link: Onoff sent none"
            " (no RECORDING or VM delivery above, or the call was too short to record)"
        )
    for link in report.links:
        lines.append(
            f"  {link.kind:9} link {link.digest} (from v{link.first_version}): "
            + _recording(link.record)
        )
    counted = [w for w in report.windows if w.counted]
    retracted = [w for w in report.windows if not w.counted]
    lines += ["", f"{topics.user_call_metrics}: counts in {_count(counted, 'window', 'windows')}"]
    if not report.windows:
        lines.append("  none: the call has no user (e-mail or number) or no callStarted")
    for w in counted:
        lines.append(f"  {_window(w.key, show_personal)}  {_figures(w.figures)}")
    for w in retracted:
        lines.append(f"  retracted from {_window(w.key, show_personal)}  {_figures(w.figures)}")
    return lines


def _count(items: Sequence[Any], one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _change(change: Change, show_personal: bool) -> str:
    if change.field in PERSONAL_FIELDS and not show_personal:
        return f"{change.field} {HIDDEN}"
    if change.field in LINK_FIELDS:
        before = [link_digest(url) for url in change.before or ()]
        after = [link_digest(url) for url in change.after or ()]
        return f"{change.field}: {before or 'none'} -> {after}"
    return f"{change.field}: {_value(change.before)} -> {_value(change.after)}"


def _value(value: Any) -> str:
    if _empty(value):
        return "none"
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):  # tags
        return "[" + ", ".join(str(tag.get("tagName") or tag.get("tagId")) for tag in value) + "]"
    return str(value)


def _recording(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "no Recording record yet: the recordings worker has not handled it"
    parts = [record["status"], f"at {_time(record['fetchedAt'])}"]
    if record.get("sizeBytes") is not None:
        parts.append(f"{record['sizeBytes']} bytes")
    if record.get("storageUri"):
        parts.append(str(record["storageUri"]))
    if record.get("error"):
        parts.append(f"error: {record['error']}")
    return ", ".join(parts)


def _window(key: str, show_personal: bool) -> str:
    if show_personal:
        return key
    window = Window.parse(key)
    return f"<user>/{window.granularity.value}/{window.start.isoformat()}"


def _figures(figures: Mapping[str, Any] | None) -> str:
    if figures is None:
        return "(no record)"
    counts = ", ".join(f"{name} {figures[name]}" for name in METRIC_FIGURES)
    return f"{counts}, talk {figures['talkSecondsTotal']} s"


def inspect_call(
    settings: BridgeSettings, call_id: str, progress: Progress | None = None
) -> CallReport:
    """Connects with the shared settings and reads the call's partitions of the four topics."""
    topics = settings.topics
    with (
        connect(settings) as registry,
        PartitionReader(settings.kafka_config(), progress) as reader,
    ):
        codecs = {
            topic: AvroCodec(registry, name, topic)
            for topic, name in (
                (topics.cdr_raw, SchemaName.CALL_EVENT),
                (topics.calls, SchemaName.CALL),
                (topics.recordings, SchemaName.RECORDING),
                (topics.user_call_metrics, SchemaName.USER_CALL_METRICS),
            )
        }
        return read_call(reader, topics, codecs, call_id)

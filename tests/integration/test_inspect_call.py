"""`onoff-bridge inspect call ID` on calls posted through the real ingress and processed by
the real dedupe, recordings and metrics workers.

The call under inspection gets four deliveries (one a repeat, one with a
recording link served by a real HTTP server, one moving its start an hour
earlier); a second call has no recording; twenty more calls fill the same
partitions. The report must show each delivery's fate, each version's
changes, the stored recording, the windows the call counts in and the one it
left, read from the key's partition of each topic, and no personal value
unless --show-personal is given.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from onoff_bridge.cli import app
from onoff_bridge.inspection import CallReport, inspect_call
from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import BridgeSettings, TopicNames
from processors.metrics.windows import Granularity, window_start
from processors.partitioning import partition_for
from processors.recordings.processor import link_digest, record_key
from tests.integration.conftest import TopicFactory
from tests.integration.ingress_fixtures import CDR_PATH, AppFactory, running_apps, with_key
from tests.integration.processor_fixtures import WorkerFactory
from tests.integration.recordings_fixtures import AudioServer
from tests.integration.test_deadletter_tools import cli_env
from tests.integration.test_metrics_pipeline import WORKER_ENV
from tests.integration.test_recordings_pipeline import recordings_env

MARKERS = {
    "name": "Zebulon Inspectman",
    "e-mail": "zebulon.inspectman@example.test",
    "number": "+15557740042",
    "external number": "+15557740043",
    "note": "marker-note-inspect-4b1e",
}
CALL = "insp-call-1"
PLAIN = "insp-call-2"


@pytest.fixture
def topic_names(topic_factory: TopicFactory) -> TopicNames:
    """Like the shared fixture, but the outputs have several partitions too, so the
    tool must pick the right one in every topic."""
    compact = {"cleanup.policy": "compact"}
    return TopicNames(
        cdr_raw=topic_factory("onoff.cdr.raw", partitions=3),
        sms_raw=topic_factory("onoff.sms.raw", partitions=1),
        deadletter=topic_factory("onoff.deadletter"),
        calls=topic_factory("onoff.calls", partitions=3, config=compact),
        recordings=topic_factory("onoff.recordings", partitions=4, config=compact),
        user_call_metrics=topic_factory("onoff.user-call-metrics", partitions=5, config=compact),
    )


@pytest.fixture
def ingress_app(endpoints: StackEndpoints, topic_names: TopicNames) -> Iterator[AppFactory]:
    with running_apps(endpoints, topic_names) as start:
        yield start


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def body(call_id: str, started: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "eventName": "CDR",
        "onoffUserName": MARKERS["name"],
        "onoffUserEmail": MARKERS["e-mail"],
        "onoffUserNumber": MARKERS["number"],
        "externalNumber": MARKERS["external number"],
        "callStarted": at(started),
        "callEnded": at(started + timedelta(minutes=3)),
        "callDuration": 180,
        "callDirection": "INBOUND",
        "callStatus": "ANSWERED",
        "callNotes": MARKERS["note"],
        **fields,
    }


def settled(report: CallReport) -> bool:
    return (
        len(report.versions) == 3
        and all(link.record is not None for link in report.links)
        and all(w.figures is not None for w in report.windows if w.counted)
        and any(w.counted for w in report.windows)
        and any(not w.counted for w in report.windows)
    )


def test_inspect_shows_deliveries_versions_recording_and_windows_of_one_call(
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    ingress_app: AppFactory,
    workers: WorkerFactory,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    for name, env in (
        ("dedupe", {}),
        ("recordings", recordings_env(tmp_path / "store")),
        ("metrics", {}),
    ):
        workers.start(name, True, **WORKER_ENV, **env)
    client = ingress_app()
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    link = server.url("/audio/insp-call-1.mp3?sig=secret-signature")
    first = body(CALL, started)
    deliveries = [
        first,
        first,  # Onoff's retry: the same body
        body(
            CALL,
            started,
            eventName="RECORDING",
            callRecordingUrl=link,
            callNotes=MARKERS["note"] + " and a follow-up",
            tags=[{"tagId": "t-1", "tagName": "Billing", "tagColor": "#32A8FF"}],
        ),
        body(CALL, started - timedelta(hours=1)),  # an earlier start: another hour window
        body(PLAIN, started),
        *(body(f"insp-other-{n}", started) for n in range(20)),
    ]
    for each in deliveries:
        answer = client.post(CDR_PATH, json=each, headers=with_key())
        assert answer.status_code == 200 and answer.json() == {}, answer.text

    settings = BridgeSettings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
        schema_registry_url=endpoints.schema_registry_url,
        topics=topic_names,
    )
    progress: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 120
    while True:
        report = inspect_call(settings, CALL, lambda *args: progress.append(args))
        if settled(report) or time.monotonic() > deadline:
            break
        time.sleep(1)

    # Deliveries: each one's fate.
    assert [d.fate for d in report.deliveries] == [
        "version 1",
        f"a repeat of offset {report.deliveries[0].offset}: dropped",
        "version 2",
        "version 3",
    ]
    assert [d.event_name for d in report.deliveries] == ["CDR", "CDR", "RECORDING", "CDR"]
    assert {d.api_key_name for d in report.deliveries} == {"primary"}
    # Versions: what changed, field by field.
    assert [v.number for v in report.versions if not v.repeat] == [1, 2, 3]
    changed = {v.number: {c.field for c in v.changes} for v in report.versions}
    assert {"callStatus", "callStarted", "onoffUserEmail", "callNotes"} <= changed[1]
    assert changed[2] == {"eventKinds", "callNotes", "callRecordingUrls", "tags"}
    assert changed[3] == {"callStarted"}
    # The recording: stored, under its key.
    [found] = report.links
    assert (found.kind, found.digest, found.first_version) == ("recording", link_digest(link), 2)
    assert found.record is not None and found.record["status"] == "stored"
    # Windows: the hour and day of the current start, and the hour it left.
    counted = {w.key for w in report.windows if w.counted}
    left = {w.key for w in report.windows if not w.counted}
    user = MARKERS["e-mail"]
    earlier = started - timedelta(hours=1)
    assert counted == {
        f"{user}/hour/{window_start(earlier, Granularity.HOUR).isoformat()}",
        f"{user}/day/{window_start(earlier, Granularity.DAY).isoformat()}",
    }
    assert f"{user}/hour/{window_start(started, Granularity.HOUR).isoformat()}" in left
    for w in report.windows:
        if w.counted:
            assert w.figures is not None and w.figures["callsTotal"] >= 1
    # One partition per key: the key's murmur2 partition, in every topic.
    read = set(report.partitions_read)
    assert {p for t, p in read if t == topic_names.cdr_raw} == {partition_for(CALL, 3)}
    assert {p for t, p in read if t == topic_names.calls} == {partition_for(CALL, 3)}
    assert {p for t, p in read if t == topic_names.recordings} == {
        partition_for(record_key(CALL, "recording", link), 4)
    }
    assert {p for t, p in read if t == topic_names.user_call_metrics} == {
        partition_for(w.key, 5) for w in report.windows
    }
    assert progress and all(done <= total for _, done, total in progress)

    env = cli_env(endpoints, topic_names)
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", "call", CALL, "--no-progress"], env=env)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"call {CALL}" in text and "4 deliveries" in text and "3 versions" in text
    assert "callNotes (hidden: personal)" in text
    assert f"callRecordingUrls: none -> ['{link_digest(link)}']" in text
    assert "tags: none -> [Billing]" in text
    assert f"recording link {link_digest(link)} (from v2): stored" in text
    assert "counts in 2 windows" in text and "retracted from <user>/hour/" in text
    for what, marker in MARKERS.items():
        assert marker not in text, what
    assert "secret-signature" not in text and "audio/insp" not in text
    personal = runner.invoke(
        app, ["inspect", "call", CALL, "--show-personal", "--no-progress"], env=env
    )
    assert personal.exit_code == 0, personal.output
    assert MARKERS["note"] in personal.stdout and f"{user}/hour/" in personal.stdout
    assert "secret-signature" not in personal.stdout  # links stay digests

    plain = runner.invoke(app, ["inspect", "call", PLAIN, "--no-progress"], env=env)
    assert plain.exit_code == 0, plain.output
    assert "no version of the call carries a recording or voicemail link" in plain.stdout
    assert "1 delivery" in plain.stdout and "1 version" in plain.stdout

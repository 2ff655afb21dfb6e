"""No process logs a phone number, an e-mail, a name, a note or a key, whatever it is sent.

The ingress and every processor run as real child processes with JSON logs at
INFO (the production default); bodies carry marker values in valid and in
invalid positions, a wrong key carries one too; then every log line of every
process is searched for the markers.

The processors are driven into their warning and dead-letter lines with marker
values in the records: a call past the metrics retention, an update of a
window past it (whose key holds the user's e-mail), a call dated 9999-12-31
that no window can hold, a year-1 call dedupe refuses, recordings stored and
expired with a marker in their signed links.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from confluent_kafka import Producer

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.integration.conftest import ConsumeAll
from tests.integration.ingress_fixtures import start_ingress
from tests.integration.processor_fixtures import Worker, WorkerFactory, free_port
from tests.integration.recordings_fixtures import AudioServer
from tests.integration.test_metrics_pipeline import WORKER_ENV
from tests.integration.test_recordings_pipeline import recordings_env

KEY = "log-test-key-Qx81"
MARKERS = {
    "user number": "+15557710042",
    "external number": "+15557710043",
    "e-mail": "zebulon.markerman@example.test",
    "external e-mail": "ext.markerwoman@example.test",
    "name": "Zebulon Markerman",
    "external name": "Ottilie Markerwoman",
    "note": "marker-note-9f2c called about the invoice",
    "sms body": "marker-sms-body-71ad",
    "wrong key": "wrong-key-marker-5e3b",
    "link signature": "marker-signature-c0ffee",
}
LOGS_JSON = {"ONOFF_BRIDGE_LOG_JSON": "true", "ONOFF_BRIDGE_LOG_LEVEL": "INFO"}


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def call(call_id: str, **fields: object) -> dict[str, object]:
    return {
        "id": call_id,
        "eventName": "CDR",
        "onoffUserName": MARKERS["name"],
        "onoffUserEmail": MARKERS["e-mail"],
        "onoffUserNumber": MARKERS["user number"],
        "externalNumber": MARKERS["external number"],
        "externalName": MARKERS["external name"],
        "externalEmail": MARKERS["external e-mail"],
        # Recent, so inside every retention.
        "callStarted": _ago(timedelta(minutes=10)),
        "callEnded": _ago(timedelta(minutes=8)),
        "callDuration": 151,
        "callDirection": "OUTBOUND",
        "callStatus": "ANSWERED",
        "callNotes": MARKERS["note"],
        **fields,
    }


def outcome_count(worker: Worker, outcome: str) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith("onoff_processor_records_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def produce_late_update(endpoints: StackEndpoints, app_id: str) -> None:
    """An update of a window far past the retention, straight into the metrics' own
    contributions topic (as one sent before the retention was shortened would be)."""
    user = MARKERS["e-mail"]
    window = f"{user}/day/2020-01-01T00:00:00+00:00"
    value = {"w": window, "id": "log-late-window", "e": [1, 0, None], "t": time.time_ns() // 10**6}
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap_servers})
    producer.produce(
        f"{app_id}-metrics-contributions", key=user.encode(), value=json.dumps(value).encode()
    )
    assert producer.flush(30) == 0


def wait_until(condition: object, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]  # a callable
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


def test_no_log_line_of_any_process_holds_a_marker_value(
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    workers: WorkerFactory,
    consume: ConsumeAll,
    server: AudioServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    ingress_log = tmp_path / "ingress.log"
    ingress = start_ingress(endpoints, topic_names, port, ingress_log, KEY, extra_env=LOGS_JSON)
    try:
        workers.start("dedupe", True, **LOGS_JSON, **WORKER_ENV)
        metrics = workers.start("metrics", True, **LOGS_JSON, **WORKER_ENV)
        recordings = workers.start(
            "recordings", True, **LOGS_JSON, **recordings_env(tmp_path / "store")
        )
        signature = f"?sig={MARKERS['link signature']}&owner={MARKERS['e-mail']}"
        stored_link = server.url(f"/audio/log-rec.mp3{signature}")
        expired_link = server.url(f"/status/410/log-gone.mp3{signature}")
        base = f"http://127.0.0.1:{port}"
        bodies = [
            call("log-ok-1"),
            call("log-ok-1", callNotes=MARKERS["note"] + " and more"),  # a second version
            # Marker values where a date, a number or a direction belongs: quarantined.
            call("log-bad-date", callStarted=MARKERS["user number"]),
            call("log-bad-duration", callDuration=MARKERS["external number"]),
            call("log-bad-direction", callDirection=MARKERS["e-mail"]),
            call("log-bad-tags", tags=MARKERS["name"]),
            call("log-odd-kind", eventName=MARKERS["note"]),  # odd but valid
            # Past the metrics retention (35 days): counted as late, logged, not applied.
            call(
                "log-late",
                callStarted=_ago(timedelta(days=60)),
                callEnded=_ago(timedelta(days=60)),
            ),
            # No window can hold it: dead-lettered by the metrics worker.
            call("log-9999", callStarted="9999-12-31T23:59:59Z", callEnded="9999-12-31T23:59:59Z"),
            # Past the dedupe retention: dead-lettered by dedupe.
            call("log-0001", callStarted="0001-01-01T00:00:00Z", callEnded="0001-01-01T00:00:00Z"),
            # Recordings: one stored, one expired, both links signed with a marker.
            call("log-rec", eventName="RECORDING", callRecordingUrl=stored_link),
            call("log-gone", eventName="VM", voicemailUrl=expired_link),
        ]
        with httpx.Client(base_url=base, timeout=10) as client:
            for body in bodies:
                answer = client.post("/v1/onoff/cdr", json=body, headers={"x-api-key": KEY})
                assert answer.status_code == 200, answer.text
            sms = {
                "id": "log-sms-1",
                "eventName": "SMS",
                "onoffUserNumber": MARKERS["user number"],
                "externalNumber": MARKERS["external number"],
                "date": MARKERS["e-mail"],
                "smsDirection": "SENT",
                "body": MARKERS["sms body"],
            }
            assert (
                client.post("/v1/onoff/sms", json=sms, headers={"x-api-key": KEY}).status_code
                == 200
            )
            wrong = client.post(
                "/v1/onoff/cdr",
                json=call("log-wrong-key"),
                headers={"x-api-key": MARKERS["wrong key"]},
            )
            assert wrong.status_code == 401
            bearer = client.post(
                "/v1/onoff/cdr",
                json=call("log-wrong-bearer"),
                headers={"authorization": f"Bearer {MARKERS['wrong key']}"},
            )
            assert bearer.status_code == 401
        produce_late_update(endpoints, f"{workers.app_id_prefix}-metrics")
        # The processors saw it all: metrics for the good call, dead letters for the bad ones.
        assert consume(topic_names.user_call_metrics, 2, timeout_s=60)
        assert len(consume(topic_names.deadletter, 6, timeout_s=60)) >= 6
        wait_until(lambda: outcome_count(metrics, "late") == 2, "both late records are counted")
        wait_until(lambda: outcome_count(metrics, "unplaceable") == 1, "the 9999 call is refused")
        wait_until(lambda: outcome_count(recordings, "fetched") >= 2, "recordings saw the links")
        assert len(consume(topic_names.recordings, 2, timeout_s=60)) >= 2
        time.sleep(1)  # let the last lines reach the files
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)
    logs = {"ingress": ingress_log.read_text(errors="replace")}
    logs |= {
        f"{w.name}-{i}": w.log.read_text(errors="replace") for i, w in enumerate(workers.workers)
    }
    assert all(text.strip() for text in logs.values()), "a process logged nothing at all"
    found = [
        f"{what} in {process}: {line[:200]}"
        for process, text in logs.items()
        for line in text.splitlines()
        for what, marker in MARKERS.items()
        if marker.lower() in line.lower()
    ]
    assert not found, "\n".join(found)

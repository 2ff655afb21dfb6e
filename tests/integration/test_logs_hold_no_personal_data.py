"""No process logs a phone number, an e-mail, a name, a note or a key, whatever it is sent.

The ingress and every processor run as real child processes with JSON logs at
INFO (the production default); bodies carry marker values in valid and in
invalid positions, a wrong key carries one too; then every log line of every
process is searched for the markers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.integration.conftest import ConsumeAll
from tests.integration.ingress_fixtures import start_ingress
from tests.integration.processor_fixtures import WorkerFactory, free_port
from tests.integration.test_metrics_pipeline import WORKER_ENV

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


def test_no_log_line_of_any_process_holds_a_marker_value(
    endpoints: StackEndpoints,
    topic_names: TopicNames,
    workers: WorkerFactory,
    consume: ConsumeAll,
    tmp_path: Path,
) -> None:
    port = free_port()
    ingress_log = tmp_path / "ingress.log"
    ingress = start_ingress(endpoints, topic_names, port, ingress_log, KEY, extra_env=LOGS_JSON)
    try:
        for name in ("dedupe", "metrics"):
            workers.start(name, True, **LOGS_JSON, **WORKER_ENV)
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
        # The processors saw it all: metrics for the good call, dead letters for the bad ones.
        assert consume(topic_names.user_call_metrics, 2, timeout_s=60)
        assert len(consume(topic_names.deadletter, 4, timeout_s=30)) >= 4
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

"""`onoff-bridge ingress --workers 2`: a scrape of /metrics counts every process's work.

Each request opens a new connection, so the kernel hands them to both worker
processes; whichever process answers a scrape must report all of them.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
from pathlib import Path

import httpx

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.conftest import sample
from tests.integration.ingress_fixtures import CDR_PATH, start_ingress, topic_size
from tests.integration.processor_fixtures import free_port

API_KEY = "workers-test-key"
REQUESTS = 60


def shared_metrics_dirs() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("onoff-ingress-metrics-")}


def accepted(text: str, topic: str) -> float:
    match = re.search(
        rf'^onoff_ingress_accepted_total\{{topic="{re.escape(topic)}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_a_scrape_of_any_worker_counts_the_requests_of_all(
    endpoints: StackEndpoints, topic_names: TopicNames, tmp_path: Path
) -> None:
    before = shared_metrics_dirs()
    port = free_port()
    process = start_ingress(
        endpoints, topic_names, port, tmp_path / "ingress.log", API_KEY, "--workers", "2"
    )
    base = f"http://127.0.0.1:{port}"
    body = sample("cdr-answered-inbound.json")
    try:
        for i in range(REQUESTS):
            response = httpx.post(  # a new connection each time
                base + CDR_PATH, json=body | {"id": f"w-{i}"}, headers={"x-api-key": API_KEY}
            )
            assert response.status_code == 200, response.text
        scrapes = [httpx.get(base + "/metrics").text for _ in range(10)]
        assert topic_size(endpoints.kafka_bootstrap_servers, topic_names.cdr_raw) == REQUESTS
        assert [accepted(text, topic_names.cdr_raw) for text in scrapes] == [REQUESTS] * 10
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert shared_metrics_dirs() == before  # the workers' shared directory is gone

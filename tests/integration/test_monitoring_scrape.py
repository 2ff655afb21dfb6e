"""The alerts and the dashboard name only metrics that the running processes export.

tests/deploy checks the same against the metric names written in the source;
this scrapes the real /metrics of the ingress and of each processor after some
traffic, so a metric renamed, dropped or never registered fails here.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from onoff_bridge.localstack import StackEndpoints
from onoff_bridge.settings import TopicNames
from tests.conftest import sample_bytes
from tests.deploy.promql import (
    EXTERNAL_METRICS,
    alert_exprs,
    dashboard_exprs,
    dashboard_variable_queries,
    metrics_used,
)
from tests.deploy.render import MONITORING, render
from tests.integration.ingress_fixtures import CDR_PATH, start_ingress
from tests.integration.processor_fixtures import WorkerFactory, free_port

API_KEY = "scrape-test-key"
# The names a family of each type exposes, as Prometheus stores them.
SAMPLE_SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "summary": ["", "_sum", "_count"],
}


def exported(text: str) -> set[str]:
    """Every series name an exposition offers, a labelled family without children included."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in SAMPLE_SUFFIXES.get(family.type, [""])}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_metric_of_the_alerts_and_the_dashboard_is_exported(
    endpoints: StackEndpoints, topic_names: TopicNames, workers: WorkerFactory, tmp_path: Path
) -> None:
    port = free_port()
    ingress = start_ingress(endpoints, topic_names, port, tmp_path / "ingress.log", API_KEY)
    try:
        processors = [workers.start(name) for name in ("dedupe", "recordings", "metrics")]
        response = httpx.post(
            f"http://127.0.0.1:{port}{CDR_PATH}",
            content=sample_bytes("cdr-answered-inbound.json"),
            headers={"x-api-key": API_KEY},
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 60
        while processors[0].processed() < 1:
            assert time.monotonic() < deadline, "dedupe did not process the delivery"
            time.sleep(0.2)
        names = exported(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        for worker in processors:
            names |= exported(worker.metrics())
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)

    assert {"onoff_ingress_requests_total", "onoff_processor_lag"} <= names
    expressions = [
        *alert_exprs(render(MONITORING)),
        *dashboard_exprs(),
        *dashboard_variable_queries(),
    ]
    missing = {
        title: sorted(used - names - EXTERNAL_METRICS)
        for title, expr in expressions
        if (used := metrics_used(expr)) - names - EXTERNAL_METRICS
    }
    assert not missing, f"not exported by any running process: {missing}"

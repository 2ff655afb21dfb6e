"""Alerts and the dashboard: PromQL that parses, over metrics the code defines."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import promql_parser
import pytest

from tests.deploy.promql import (
    EXTERNAL_METRICS,
    METRIC_NAME,
    alert_exprs,
    dashboard_exprs,
    grafana_free,
)
from tests.deploy.render import MONITORING, ROOT, by_kind

METRIC_MODULES = [
    "ingress/metrics.py",
    "processors/progress.py",
    "processors/recordings/metrics.py",
]
# The suffixes prometheus-client exposes for each metric type.
SUFFIXES = {
    "Counter": ["_total", "_created"],
    "Gauge": [""],
    "Histogram": ["_bucket", "_sum", "_count", "_created"],
    "Summary": ["", "_sum", "_count", "_created"],
}


def exposed_metric_names() -> set[str]:
    """Names the code's Counter/Gauge/Histogram calls expose, read from the source."""
    names = set()
    for module in METRIC_MODULES:
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in SUFFIXES
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                base = str(node.args[0].value)
                names |= {base + suffix for suffix in SUFFIXES[node.func.id]}
    return names


def test_the_code_defines_the_metrics_we_expect():
    names = exposed_metric_names()
    assert {"onoff_ingress_requests_total", "onoff_processor_lag"} <= names
    assert "onoff_recordings_downloads_total" in names


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_parses_and_uses_only_metrics_the_code_defines(monitoring, source):
    exprs = alert_exprs(monitoring) if source == "alerts" else dashboard_exprs()
    assert exprs
    known = exposed_metric_names() | EXTERNAL_METRICS
    for name, expr in exprs:
        promql = grafana_free(expr)
        promql_parser.parse(promql)  # raises ValueError on a syntax error
        used = set(METRIC_NAME.findall(promql))
        assert used, f"{name}: no metric found in {expr!r}"
        assert used <= known, f"{name}: {sorted(used - known)} are not defined in the code"


def test_the_parser_rejects_broken_promql():
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(onoff_processor_lag[5m])")


def test_the_alerts_cover_what_an_sre_is_paged_for(monitoring):
    exprs = " ".join(expr for _, expr in alert_exprs(monitoring))
    for needle in [
        "onoff_processor_lag",  # lag growing
        "onoff_processor_seconds_since_progress",  # stalled processor...
        'status=~"5.."',  # ingress 5xx
        "onoff_ingress_publish_failures_total",  # ingress 503
        'outcome="deadlettered"',  # processors' dead letters
        "onoff_ingress_quarantined_total",  # ingress' dead letters
        'status="failed"',  # recordings failing
        'status="expired"',  # recordings lost to expired links
        "kube_pod_container_status_restarts_total",  # restarts
        "histogram_quantile(0.99",  # ingress p99
        "onoff_ingress_spool_oldest_age_seconds",  # the spool not draining
        "onoff_ingress_spool_capacity_bytes",  # the spool filling up
    ]:
        assert needle in exprs, needle
    stalled = dict(alert_exprs(monitoring))["OnoffBridgeProcessorStalled"]
    assert "onoff_processor_lag > 0" in stalled  # ...while records wait


def test_the_dashboard_has_the_panels_issue_11_lists():
    dashboard = json.loads(Path(MONITORING / "dashboard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"] if p["type"] != "row"}
    assert {
        "Requests by route and status",
        "Request latency",
        "Consumer lag per processor",
        "Records per outcome",
        "Dead letters",
        "Recordings by final status",
        "Metrics: call versions and window updates",
    } <= titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36


def test_the_dashboard_configmap_is_labelled_for_grafanas_sidecar(monitoring):
    configmap = by_kind(monitoring, "ConfigMap")["onoff-bridge-dashboard"]
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    json.loads(configmap["data"]["dashboard.json"])

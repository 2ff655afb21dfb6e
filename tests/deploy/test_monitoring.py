"""Alerts and the dashboard: PromQL that parses, over metrics the code defines."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import promql_parser
import pytest

from tests.deploy.crds import PrometheusRule
from tests.deploy.render import MONITORING, ROOT, Manifest, by_kind

METRIC_MODULES = [
    "ingress/metrics.py",
    "processors/progress.py",
    "processors/recordings/metrics.py",
]
# Not ours: Prometheus's own scrape health, and kube-state-metrics' restart counter.
EXTERNAL_METRICS = {"up", "kube_pod_container_status_restarts_total"}
# The suffixes prometheus-client exposes for each metric type.
SUFFIXES = {
    "Counter": ["_total", "_created"],
    "Gauge": [""],
    "Histogram": ["_bucket", "_sum", "_count", "_created"],
    "Summary": ["", "_sum", "_count", "_created"],
}
# Every onoff_/kube_ word is a metric (label values use hyphens: job="onoff-bridge-...").
METRIC_NAME = re.compile(r"\b(onoff_[a-z0-9_]+|kube_[a-z0-9_]+|up(?=\{))\b")


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


def _rules(monitoring: list[Manifest]) -> list[tuple[str, str]]:
    rule = PrometheusRule.model_validate(by_kind(monitoring, "PrometheusRule")["onoff-bridge"])
    return [(r.alert, r.expr) for g in rule.spec.groups for r in g.rules]


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _grafana_free(expr: str) -> str:
    # Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
    return expr.replace("$__rate_interval", "5m").replace("$namespace", "onoff-bridge")


def test_the_code_defines_the_metrics_we_expect():
    names = exposed_metric_names()
    assert {"onoff_ingress_requests_total", "onoff_processor_lag"} <= names
    assert "onoff_recordings_downloads_total" in names


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_expression_parses_and_uses_only_metrics_the_code_defines(monitoring, source):
    exprs = _rules(monitoring) if source == "alerts" else _dashboard_exprs()
    assert exprs
    known = exposed_metric_names() | EXTERNAL_METRICS
    for name, expr in exprs:
        promql = _grafana_free(expr)
        promql_parser.parse(promql)  # raises ValueError on a syntax error
        used = set(METRIC_NAME.findall(promql))
        assert used, f"{name}: no metric found in {expr!r}"
        assert used <= known, f"{name}: {sorted(used - known)} are not defined in the code"


def test_the_parser_rejects_broken_promql():
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(onoff_processor_lag[5m])")


def test_the_alerts_cover_what_an_sre_is_paged_for(monitoring):
    exprs = " ".join(expr for _, expr in _rules(monitoring))
    for needle in [
        "onoff_processor_lag",  # lag growing
        "onoff_processor_seconds_since_progress",  # stalled processor...
        'status=~"5.."',  # ingress 5xx
        "onoff_ingress_publish_failures_total",  # ingress 503
        'outcome="deadlettered"',  # processors' dead letters
        "onoff_ingress_quarantined_total",  # ingress' dead letters
        'status="failed"',  # recordings failing
        "kube_pod_container_status_restarts_total",  # restarts
        "histogram_quantile(0.99",  # ingress p99
        "onoff_ingress_spool_oldest_age_seconds",  # the spool not draining
        "onoff_ingress_spool_capacity_bytes",  # the spool filling up
    ]:
        assert needle in exprs, needle
    stalled = dict(_rules(monitoring))["OnoffBridgeProcessorStalled"]
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
    } <= titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36


def test_the_dashboard_configmap_is_labelled_for_grafanas_sidecar(monitoring):
    configmap = by_kind(monitoring, "ConfigMap")["onoff-bridge-dashboard"]
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    json.loads(configmap["data"]["dashboard.json"])

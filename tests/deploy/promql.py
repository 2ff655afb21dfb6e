"""The PromQL of the alerts and the dashboard, and the metric names each expression uses."""

from __future__ import annotations

import json
import re

from tests.deploy.crds import PrometheusRule
from tests.deploy.render import MONITORING, Manifest, by_kind

# Not ours: Prometheus's own scrape health, and kube-state-metrics' restart counter.
EXTERNAL_METRICS = {"up", "kube_pod_container_status_restarts_total"}
# Every onoff_/kube_ word is a metric (label values use hyphens: job="onoff-bridge-...").
METRIC_NAME = re.compile(r"\b(onoff_[a-z0-9_]+|kube_[a-z0-9_]+|up(?=\{))\b")


def alert_exprs(monitoring: list[Manifest]) -> list[tuple[str, str]]:
    """(alert name, expression) of every rule of the PrometheusRule."""
    rule = PrometheusRule.model_validate(by_kind(monitoring, "PrometheusRule")["onoff-bridge"])
    return [(r.alert, r.expr) for g in rule.spec.groups for r in g.rules]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of the Grafana dashboard."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def dashboard_variable_queries() -> list[tuple[str, str]]:
    """(variable name, query) of the dashboard's query variables, e.g. label_values(...)."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    variables = dashboard.get("templating", {}).get("list", [])
    queries = []
    for variable in variables:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        # Grafana runs `query` (a string, or an object holding one); `definition` is its label.
        for text in (
            query.get("query") if isinstance(query, dict) else query,
            variable.get("definition"),
        ):
            if text:
                queries.append((f"${variable['name']}", str(text)))
    return queries


def grafana_free(expr: str) -> str:
    # Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
    return expr.replace("$__rate_interval", "5m").replace("$namespace", "onoff-bridge")


def metrics_used(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(grafana_free(expr)))

"""Pydantic models of the CRD fields our manifests use (KEDA 2.x, Prometheus Operator v1).

The offline Kubernetes schemas do not hold CRDs. These models forbid unknown fields,
so a misspelt one fails; a field we start using must be added here, checked against
the CRD's documentation (keda.sh/docs/2.x/reference/scaledobject-spec,
prometheus-operator.dev/docs/api-reference/api).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(Strict):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


# KEDA


class ScaleTargetRef(Strict):
    api_version: str = Field("apps/v1", alias="apiVersion")
    kind: str = "Deployment"
    name: str
    env_source_container_name: str | None = Field(None, alias="envSourceContainerName")


class KafkaTriggerMetadata(Strict):
    bootstrap_servers: str | None = Field(None, alias="bootstrapServers")
    bootstrap_servers_from_env: str | None = Field(None, alias="bootstrapServersFromEnv")
    consumer_group: str = Field(alias="consumerGroup")
    topic: str
    lag_threshold: str = Field(alias="lagThreshold", pattern=r"^[1-9][0-9]*$")
    activation_lag_threshold: str | None = Field(
        None, alias="activationLagThreshold", pattern=r"^[0-9]+$"
    )
    offset_reset_policy: Literal["earliest", "latest"] = Field("latest", alias="offsetResetPolicy")
    allow_idle_consumers: Literal["true", "false"] | None = Field(None, alias="allowIdleConsumers")


class AuthenticationRef(Strict):
    name: str
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] = "TriggerAuthentication"


class KafkaTrigger(Strict):
    type: Literal["kafka"]
    metadata: KafkaTriggerMetadata
    authentication_ref: AuthenticationRef | None = Field(None, alias="authenticationRef")


class ScalingPolicy(Strict):
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int = Field(alias="periodSeconds")


class ScalingRules(Strict):
    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds")
    policies: list[ScalingPolicy] = []


class Behavior(Strict):
    scale_up: ScalingRules | None = Field(None, alias="scaleUp")
    scale_down: ScalingRules | None = Field(None, alias="scaleDown")


class HpaConfig(Strict):
    behavior: Behavior | None = None


class Advanced(Strict):
    horizontal_pod_autoscaler_config: HpaConfig | None = Field(
        None, alias="horizontalPodAutoscalerConfig"
    )


class ScaledObjectSpec(Strict):
    scale_target_ref: ScaleTargetRef = Field(alias="scaleTargetRef")
    min_replica_count: int = Field(0, alias="minReplicaCount", ge=0)
    max_replica_count: int = Field(100, alias="maxReplicaCount", ge=1)
    polling_interval: int | None = Field(None, alias="pollingInterval")
    cooldown_period: int | None = Field(None, alias="cooldownPeriod")
    advanced: Advanced | None = None
    triggers: list[KafkaTrigger] = Field(min_length=1)


class ScaledObject(Strict):
    api_version: Literal["keda.sh/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ScaledObject"]
    metadata: Metadata
    spec: ScaledObjectSpec


class SecretTargetRef(Strict):
    parameter: str
    name: str
    key: str


class TriggerAuthenticationSpec(Strict):
    secret_target_ref: list[SecretTargetRef] = Field(alias="secretTargetRef", min_length=1)


class TriggerAuthentication(Strict):
    api_version: Literal["keda.sh/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TriggerAuthentication"]
    metadata: Metadata
    spec: TriggerAuthenticationSpec


# Prometheus Operator


class LabelSelector(Strict):
    match_labels: dict[str, str] = Field(alias="matchLabels", min_length=1)


class Endpoint(Strict):
    port: str
    path: str = "/metrics"
    interval: str | None = Field(None, pattern=r"^[0-9]+(ms|s|m|h)$")


class ServiceMonitorSpec(Strict):
    selector: LabelSelector
    endpoints: list[Endpoint] = Field(min_length=1)


class ServiceMonitor(Strict):
    api_version: Literal["monitoring.coreos.com/v1"] = Field(alias="apiVersion")
    kind: Literal["ServiceMonitor"]
    metadata: Metadata
    spec: ServiceMonitorSpec


class Rule(Strict):
    alert: str = Field(pattern=r"^[A-Z][A-Za-z0-9]+$")
    expr: str
    for_: str | None = Field(None, alias="for", pattern=r"^[0-9]+(s|m|h)$")
    labels: dict[str, Literal["warning", "critical"]]
    annotations: dict[str, str]


class RuleGroup(Strict):
    name: str
    rules: list[Rule] = Field(min_length=1)


class PrometheusRuleSpec(Strict):
    groups: list[RuleGroup] = Field(min_length=1)


class PrometheusRule(Strict):
    api_version: Literal["monitoring.coreos.com/v1"] = Field(alias="apiVersion")
    kind: Literal["PrometheusRule"]
    metadata: Metadata
    spec: PrometheusRuleSpec


MODELS: dict[str, type[BaseModel]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
    "ServiceMonitor": ServiceMonitor,
    "PrometheusRule": PrometheusRule,
}

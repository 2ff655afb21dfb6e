"""KEDA and Prometheus Operator objects: well formed, and pointing at things that exist."""

from __future__ import annotations

from onoff_bridge.settings import TopicNames
from processors.settings import ProcessorSettings
from tests.deploy.crds import MODELS, ScaledObject, ServiceMonitor, TriggerAuthentication
from tests.deploy.render import KUBERNETES, Manifest, by_kind, load_file, pod_spec
from tests.deploy.test_kubernetes import PROCESSORS, topic_partitions

# What each processor consumes (processors/dedupe.py, recordings/install.py, metrics/wiring.py).
SOURCE_TOPICS = {
    "dedupe": TopicNames().cdr_raw,
    "recordings": TopicNames().calls,
    "metrics": TopicNames().calls,
}


def _scaled_objects(workloads: list[Manifest]) -> list[ScaledObject]:
    return [ScaledObject.model_validate(m) for m in workloads if m["kind"] == "ScaledObject"]


def test_every_crd_object_has_the_fields_its_crd_takes(workloads, monitoring):
    crds = [m for m in workloads + monitoring if m["apiVersion"].startswith(("keda", "monitoring"))]
    assert {m["kind"] for m in crds} == set(MODELS)
    for manifest in crds:
        MODELS[manifest["kind"]].model_validate(manifest)


def test_each_processor_scales_on_the_lag_of_its_own_group_and_topic(workloads):
    deployments = by_kind(workloads, "StatefulSet")
    scaled = {so.spec.scale_target_ref.name: so for so in _scaled_objects(workloads)}
    assert set(scaled) == {f"onoff-bridge-{p}" for p in PROCESSORS}
    prefix = ProcessorSettings().app_id_prefix
    for name, so in scaled.items():
        target = so.spec.scale_target_ref
        assert (target.api_version, target.kind) == ("apps/v1", "StatefulSet")
        worker = pod_spec(deployments[name])["containers"][0]  # type: ignore[index]
        assert worker["args"][0] == "worker"
        processor = worker["args"][1]
        assert target.env_source_container_name == worker["name"]
        (trigger,) = so.spec.triggers
        assert trigger.metadata.consumer_group == f"{prefix}-{processor}"
        assert trigger.metadata.topic == SOURCE_TOPICS[processor]


def test_keda_reads_a_new_groups_backlog_and_never_exceeds_the_partitions(workloads):
    partitions = topic_partitions(workloads)
    for so in _scaled_objects(workloads):
        assert 1 <= so.spec.min_replica_count <= so.spec.max_replica_count <= partitions
        for trigger in so.spec.triggers:
            assert trigger.metadata.offset_reset_policy == "earliest"
            assert trigger.metadata.lag_threshold


def test_keda_takes_the_brokers_from_the_workers_environment(workloads):
    deployments = by_kind(workloads, "StatefulSet")
    configmaps = by_kind(workloads, "ConfigMap")
    for so in _scaled_objects(workloads):
        worker = pod_spec(deployments[so.spec.scale_target_ref.name])["containers"][0]  # type: ignore[index]
        env = {e["name"] for e in worker.get("env", [])}
        for source in worker["envFrom"]:
            if "configMapRef" in source:
                env |= set(configmaps[source["configMapRef"]["name"]]["data"])
        for trigger in so.spec.triggers:
            assert trigger.metadata.bootstrap_servers is None
            assert trigger.metadata.bootstrap_servers_from_env in env


def test_keda_authenticates_with_a_trigger_authentication_from_the_kafka_secret(workloads):
    auths = {
        name: TriggerAuthentication.model_validate(m)
        for name, m in by_kind(workloads, "TriggerAuthentication").items()
    }
    secrets = {s["metadata"]["name"]: s for s in load_file(KUBERNETES / "secrets.example.yaml")}
    for so in _scaled_objects(workloads):
        for trigger in so.spec.triggers:
            assert trigger.authentication_ref is not None
            auth = auths[trigger.authentication_ref.name]
            params = {ref.parameter for ref in auth.spec.secret_target_ref}
            assert params == {"sasl", "username", "password", "tls", "ca"}
            for ref in auth.spec.secret_target_ref:
                assert ref.key in secrets[ref.name]["stringData"], ref


def test_service_monitors_select_services_by_a_port_they_have(workloads, monitoring):
    services = by_kind(workloads, "Service").values()
    selected = set()
    for manifest in by_kind(monitoring, "ServiceMonitor").values():
        monitor = ServiceMonitor.model_validate(manifest)
        wanted = monitor.spec.selector.match_labels
        matches = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert matches, monitor.metadata.name
        for service in matches:
            ports = {p["name"] for p in service["spec"]["ports"]}
            assert {e.port for e in monitor.spec.endpoints} <= ports, service["metadata"]["name"]
            selected.add(service["metadata"]["name"])
    assert selected == {f"onoff-bridge-{p}" for p in [*PROCESSORS, "ingress"]}


def test_monitoring_objects_land_in_the_workloads_namespace(workloads, monitoring):
    namespaces = {m["metadata"].get("namespace") for m in workloads if m["kind"] != "Namespace"}
    assert namespaces == {m["metadata"]["namespace"] for m in monitoring}

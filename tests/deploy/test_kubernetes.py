"""The Kubernetes manifests: valid for the API server, and as safe as issue 11 asks."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import pytest
from pydantic import BaseModel

from ingress.settings import IngressSettings
from processors.settings import ProcessorSettings
from schemas.settings import BridgeSettings
from tests.deploy.render import (
    KUBERNETES,
    OVERLAYS,
    ROOT,
    Manifest,
    by_kind,
    containers,
    load_file,
    pod_spec,
    render,
)

# A version clusters run now, and the newest the offline schemas know.
KUBERNETES_VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
PROCESSORS = ["dedupe", "recordings", "metrics"]

# Settings the manifests set before the code defines them, so the manifests need no
# change when it lands. Remove a name from here once BridgeSettings defines it.
UPCOMING_SETTINGS: set[str] = set()


def _setting_names(model: type[BaseModel], prefix: str = "ONOFF_BRIDGE_") -> set[str]:
    """Every variable pydantic-settings reads for `model` (nested models with `__`)."""
    names = set()
    for field_name, field in model.model_fields.items():
        name = prefix + field_name.upper()
        names.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _setting_names(annotation, name + "__")
    return names


SETTINGS = _setting_names(BridgeSettings) | _setting_names(IngressSettings)
SETTINGS |= _setting_names(ProcessorSettings)


def _label(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


# What runs a service: a Deployment each, but the ingress is a StatefulSet where its spool
# is on (components/ingress-spool).
SERVICE_KINDS = ("Deployment", "StatefulSet")


def _deployments(workloads: list[Manifest]) -> list[Manifest]:
    """The Deployments, and the StatefulSet the ingress becomes with its spool on."""
    return [m for m in workloads if m["kind"] in SERVICE_KINDS]


def _services_by_name(workloads: list[Manifest]) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in _deployments(workloads)}


def _pods(workloads: list[Manifest]) -> list[Manifest]:
    """Every object that runs a pod (the Deployments and the topics Job)."""
    return [m for m in workloads if pod_spec(m) is not None]


def test_the_base_holds_a_workload_per_part(workloads):
    names = {f"onoff-bridge-{p}" for p in PROCESSORS} | {"onoff-bridge-ingress"}
    assert sorted(m["metadata"]["name"] for m in _deployments(workloads)) == sorted(names)
    processors = {f"onoff-bridge-{p}" for p in PROCESSORS}
    # The ingress is a Deployment, or a StatefulSet where its spool is on (prod).
    assert (
        processors
        <= set(by_kind(workloads, "StatefulSet"))
        <= processors | {"onoff-bridge-ingress"}
    )


def test_each_processor_keeps_its_tables_on_a_volume_of_its_own(workloads):
    services = by_kind(workloads, "Service")
    for name in (f"onoff-bridge-{p}" for p in PROCESSORS):
        statefulset = by_kind(workloads, "StatefulSet")[name]
        spec = statefulset["spec"]
        assert spec["serviceName"] == name and name in services
        [claim] = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        worker = pod_spec(statefulset)["containers"][0]  # type: ignore[index]
        assert {"name": "data", "mountPath": "/data"} in worker["volumeMounts"]
        assert _env(workloads, worker)["ONOFF_BRIDGE_STORE"] == "rocksdb"
        # KEDA adds pods all at once; a scaled-down pod's volume goes with it.
        assert spec["podManagementPolicy"] == "Parallel"
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(workloads, version):
    example_secrets = load_file(KUBERNETES / "secrets.example.yaml")
    for manifest in workloads + example_secrets:
        if manifest["apiVersion"].startswith(CRD_GROUPS):
            continue  # not in the offline schemas: test_crds.py checks them
        # validate() may fill defaults in; the rendered manifests stay as they are.
        kubernetes_validate.validate(copy.deepcopy(manifest), version, strict=True)


def test_every_pod_is_isolated_from_service_links_and_the_api(workloads):
    assert len(_pods(workloads)) == 5  # ingress, three processors, the topics Job
    for deployment in _pods(workloads):
        spec = pod_spec(deployment)
        assert spec is not None
        assert spec.get("enableServiceLinks") is False, _label(deployment)
        assert spec.get("automountServiceAccountToken") is False, _label(deployment)


def test_every_pod_runs_restricted(workloads):
    for deployment in _pods(workloads):
        spec = pod_spec(deployment)
        assert spec is not None
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, _label(deployment)
        assert isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0
        assert isinstance(pod["runAsGroup"], int) and pod["runAsGroup"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(deployment, init=True):
            where = f"{_label(deployment)} {container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


def test_a_read_only_root_leaves_tmp_and_the_data_dir_writable(workloads):
    for deployment in _pods(workloads):
        spec = pod_spec(deployment)
        assert spec is not None
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        claims = {c["metadata"]["name"] for c in deployment["spec"].get("volumeClaimTemplates", [])}
        main = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
        assert mounts.get("/tmp") in empty_dirs, _label(deployment)
        if main["args"][0] == "worker":
            assert mounts.get("/data") in empty_dirs | claims, _label(deployment)
            data_dir = _env(workloads, main)["ONOFF_BRIDGE_DATA_DIR"]
            assert data_dir.startswith("/data/"), _label(deployment)


def test_every_container_has_requests_and_a_memory_limit(workloads):
    for deployment in _pods(workloads):
        for container in containers(deployment, init=True):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]


def test_every_service_has_probes_and_processors_a_startup_probe(workloads):
    for deployment in _deployments(workloads):
        main = pod_spec(deployment)["containers"][0]  # type: ignore[index]
        assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(main), _label(deployment)
        if main["args"][0] == "worker":
            startup = main["startupProbe"]
            assert startup["httpGet"] == {"path": "/healthz", "port": "web"}
            # A dedupe worker rebuilds its table first: minutes, not the default 30 s.
            budget = startup["periodSeconds"] * startup["failureThreshold"]
            assert budget >= 300, _label(deployment)
            assert {"name": "web", "containerPort": 6066} in main["ports"]


def test_images_are_pinned(workloads):
    for deployment in _pods(workloads):
        for container in containers(deployment, init=True):
            image = container["image"]
            tag = image.split("/")[-1].partition(":")[2]
            assert (tag and tag != "latest") or "@sha256:" in image, image


def test_autoscaled_deployments_fix_no_replica_count(workloads):
    scaled = {m["spec"]["scaleTargetRef"]["name"] for m in workloads if m["kind"] == "ScaledObject"}
    scaled |= {
        m["spec"]["scaleTargetRef"]["name"]
        for m in workloads
        if m["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == set(_services_by_name(workloads))
    for deployment in _deployments(workloads):
        assert "replicas" not in deployment["spec"], _label(deployment)


def test_the_ingress_has_an_hpa_and_a_service(workloads):
    hpa = by_kind(workloads, "HorizontalPodAutoscaler")["onoff-bridge-ingress"]
    assert hpa["spec"]["minReplicas"] >= 2
    service = by_kind(workloads, "Service")["onoff-bridge-ingress"]
    assert service["spec"]["selector"] == _template_labels(workloads, "onoff-bridge-ingress")


def test_every_deployment_has_a_disruption_budget(workloads):
    budgets = by_kind(workloads, "PodDisruptionBudget").values()
    selectors = [b["spec"]["selector"]["matchLabels"] for b in budgets]
    for deployment in _deployments(workloads):
        assert deployment["spec"]["selector"]["matchLabels"] in selectors, _label(deployment)


def test_every_processor_has_a_service_for_its_web_port(workloads):
    services = by_kind(workloads, "Service")
    for name in PROCESSORS:
        service = services[f"onoff-bridge-{name}"]
        assert service["spec"]["selector"] == _template_labels(workloads, f"onoff-bridge-{name}")
        assert {"name": "web", "port": 6066, "targetPort": "web"} in service["spec"]["ports"]


def test_topics_are_set_up_by_one_job_with_its_own_admin_user(workloads):
    # Only the Job may create topics: no part carries the set-up (or its Kafka rights).
    for deployment in _deployments(workloads):
        init = pod_spec(deployment).get("initContainers", [])  # type: ignore[union-attr]
        assert not any("topics" in c.get("args", []) for c in init), _label(deployment)
        for container in containers(deployment):
            assert container["args"][:1] != ["topics"], _label(deployment)
    [job] = by_kind(workloads, "Job").values()
    [container] = containers(job)
    assert container["args"][:2] == ["topics", "apply"]
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}  # type: ignore[index]
    users = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if e["name"].startswith("ONOFF_BRIDGE_KAFKA__SASL_")
    }
    assert set(users.values()) == {"onoff-bridge-kafka-admin"}, users
    # A finished Job must go away, or the next release's apply hits its immutable template.
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_every_onoff_bridge_variable_is_a_real_setting(workloads):
    configmaps = by_kind(workloads, "ConfigMap")
    names = {n for cm in configmaps.values() for n in cm["data"]}
    for deployment in _pods(workloads):
        for container in containers(deployment, init=True):
            names |= {e["name"] for e in container.get("env", [])}
    for secret in load_file(KUBERNETES / "secrets.example.yaml"):
        names |= {n for n in secret["stringData"] if n.startswith("ONOFF_BRIDGE_")}
    ours = {n for n in names if n.startswith("ONOFF_BRIDGE_")}
    assert ours - SETTINGS - UPCOMING_SETTINGS == set()
    # Once the settings land, the allow-list must shrink.
    assert UPCOMING_SETTINGS.isdisjoint(SETTINGS), UPCOMING_SETTINGS & SETTINGS


def test_every_referenced_configmap_and_secret_exists(workloads):
    configmaps = set(by_kind(workloads, "ConfigMap"))
    secrets = {s["metadata"]["name"] for s in load_file(KUBERNETES / "secrets.example.yaml")}
    for deployment in _pods(workloads):
        for container in containers(deployment, init=True):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, env["name"]
                    example = _example_secret(ref["name"])
                    assert ref["key"] in example["stringData"], env["name"]


def test_example_secrets_hold_placeholders_only():
    for secret in load_file(KUBERNETES / "secrets.example.yaml"):
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            if key in {"sasl", "tls"}:
                continue  # mechanism names, not secrets
            assert "<" in value and ">" in value, f"{secret['metadata']['name']}.{key}"
    resources = load_file(KUBERNETES / "kustomization.yaml")[0]["resources"]
    assert "secrets.example.yaml" not in resources


def test_network_policies_open_the_ports_the_parts_need(workloads):
    policies = by_kind(workloads, "NetworkPolicy")
    deny = policies["onoff-bridge-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    rules = [r for p in policies.values() for r in p["spec"].get("ingress", [])]
    open_ports = {port["port"] for r in rules for port in r["ports"]}
    assert {8080, 6066} <= open_ports
    scrape = policies["onoff-bridge-metrics-scrape"]["spec"]["ingress"][0]["from"]
    assert scrape == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress = [r for p in policies.values() for r in p["spec"].get("egress", [])]
    egress_ports = {port["port"] for r in egress for port in r["ports"]}
    assert {53, 9092, 8081, 443} <= egress_ports
    registry_port = re.search(r":(\d+)", _config(workloads)["ONOFF_BRIDGE_SCHEMA_REGISTRY_URL"][6:])
    assert registry_port and int(registry_port[1]) in egress_ports


def _config(workloads: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = by_kind(workloads, "ConfigMap")["onoff-bridge"]["data"]
    return data


def _env(workloads: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    env = dict(_config(workloads))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _example_secret(name: str) -> Manifest:
    secrets = {s["metadata"]["name"]: s for s in load_file(KUBERNETES / "secrets.example.yaml")}
    return secrets[name]


def _template_labels(workloads: list[Manifest], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = _services_by_name(workloads)[deployment]["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def topic_partitions(workloads: list[Manifest]) -> int:
    """The --partitions the topics Job creates every keyed topic with."""
    [job] = by_kind(workloads, "Job").values()
    args = containers(job)[0]["args"]
    return int(args[args.index("--partitions") + 1])


def test_the_ingress_object_serves_tls_for_its_host(workloads):
    ingress = by_kind(workloads, "Ingress")["onoff-bridge-ingress"]
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert hosts and hosts <= tls_hosts
    assert all(tls["secretName"] for tls in ingress["spec"]["tls"])


def test_each_overlay_pins_its_own_image_and_kafka():
    rendered = {env: render(OVERLAYS / env) for env in ("dev", "prod")}
    images = {
        env: {c["image"] for d in _deployments(m) for c in containers(d, init=True)}
        for env, m in rendered.items()
    }
    assert images["dev"].isdisjoint(images["prod"]), images
    # Prod pulls by digest, so a re-pushed tag cannot change what runs.
    assert all("@sha256:" in image for image in images["prod"]), images["prod"]
    bootstrap = {
        env: _config(m)["ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS"] for env, m in rendered.items()
    }
    assert bootstrap["dev"] != bootstrap["prod"]


def test_every_deployment_spreads_over_zones_and_nodes(workloads):
    for deployment in _deployments(workloads):
        labels = _template_labels(workloads, deployment["metadata"]["name"])
        spread = pod_spec(deployment)["topologySpreadConstraints"]  # type: ignore[index]
        keys = {c["topologyKey"] for c in spread}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, _label(deployment)
        for constraint in spread:
            # A selector that matches no pod of this Deployment spreads nothing.
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
            assert constraint["maxSkew"] == 1


def test_kafka_and_registry_egress_goes_to_their_namespace_only(workloads):
    policy = by_kind(workloads, "NetworkPolicy")["onoff-bridge-egress-kafka"]
    ports = {9092, 8081}
    rules = [r for r in policy["spec"]["egress"] if {p["port"] for p in r["ports"]} & ports]
    assert rules
    config = _config(workloads)
    for rule in rules:
        # A rule without `to:` would let every pod reach these ports anywhere.
        [peer] = rule["to"]
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for key in ("ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "ONOFF_BRIDGE_SCHEMA_REGISTRY_URL"):
            assert f".{namespace}.svc" in config[key], key


def test_every_deploy_path_the_readme_shows_is_one_these_tests_check():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    shown = set(re.findall(r"\bdeploy/[\w./-]*\w", section))
    checked = {
        "deploy/kubernetes",
        "deploy/overlays/dev",
        "deploy/overlays/prod",
        "deploy/observability",
        "deploy/kubernetes/secrets.example.yaml",
        "deploy/Dockerfile",
    }
    assert {"deploy/overlays/prod", "deploy/observability"} <= shown
    assert shown <= checked, sorted(shown - checked)
    assert all((ROOT / path).exists() for path in shown)

"""The ingress's spool in Kubernetes: on a volume that outlives the pod, or not on at all.

A spool on an emptyDir or the container's file system would answer 200 for
records a pod loss then deletes (Onoff never resends them), so wherever the
spool is on the ingress must be a StatefulSet with a PersistentVolumeClaim
per pod; the component that makes it one (deploy/components/ingress-spool)
must run the very pod the Deployment defines.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from ingress.settings import IngressSettings
from tests.deploy.render import KUBERNETES, OVERLAYS, ROOT, Manifest, by_kind, pod_spec, render

COMPONENT = ROOT / "deploy" / "components" / "ingress-spool"
INGRESS = "onoff-bridge-ingress"
_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def _ingress(workloads: list[Manifest]) -> Manifest:
    [ingress] = [
        m
        for m in workloads
        if m["kind"] in {"Deployment", "StatefulSet"} and m["metadata"]["name"] == INGRESS
    ]
    return ingress


def _env(workloads: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = dict(by_kind(workloads, "ConfigMap")["onoff-bridge"]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS.get(unit or "", 1)


def test_wherever_the_spool_is_on_it_lives_on_a_claim_of_each_pods_own(workloads):
    ingress = _ingress(workloads)
    spec = pod_spec(ingress)
    assert spec is not None
    container = spec["containers"][0]
    env = _env(workloads, container)
    defaults = IngressSettings.model_fields
    if env.get("ONOFF_BRIDGE_SPOOL_ENABLED", "false").lower() != "true":
        assert ingress["kind"] == "Deployment"
        return
    assert ingress["kind"] == "StatefulSet"
    directory = env["ONOFF_BRIDGE_SPOOL_DIRECTORY"]
    [mount] = [m for m in container["volumeMounts"] if directory.startswith(m["mountPath"])]
    claims = {c["metadata"]["name"]: c for c in ingress["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims, "the spool is not on the pod's PersistentVolumeClaim"
    assert mount["name"] not in {v["name"] for v in spec["volumes"]}  # no emptyDir shadows it
    claim = claims[mount["name"]]["spec"]
    cap = int(env.get("ONOFF_BRIDGE_SPOOL_MAX_BYTES", defaults["spool_max_bytes"].default))
    assert _bytes(claim["resources"]["requests"]["storage"]) > cap
    # Scaled away or deleted, a pod's records wait on its volume for it to return.
    assert ingress["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    hpa = by_kind(workloads, "HorizontalPodAutoscaler")[INGRESS]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": INGRESS,
    }
    governing = by_kind(workloads, "Service")[ingress["spec"]["serviceName"]]
    assert governing["spec"]["clusterIP"] == "None"
    # The ServiceMonitor scrapes the Service labelled component=ingress: not this one too.
    assert (
        governing["metadata"]["labels"]
        != by_kind(workloads, "Service")[INGRESS]["metadata"]["labels"]
    )
    # SIGTERM: requests in flight, the drain's last chance, its batch in flight, the flush.
    delivery = float(
        env.get("ONOFF_BRIDGE_DELIVERY_TIMEOUT_S", defaults["delivery_timeout_s"].default)
    )
    drain = float(
        env.get("ONOFF_BRIDGE_SPOOL_SHUTDOWN_DRAIN_S", defaults["spool_shutdown_drain_s"].default)
    )
    assert spec["terminationGracePeriodSeconds"] >= (delivery + 5) + drain + delivery + 10


def test_prod_runs_the_ingress_with_its_spool_and_base_and_dev_without():
    kinds = {env: _ingress(render(OVERLAYS / env))["kind"] for env in ("dev", "prod")}
    assert kinds == {"dev": "Deployment", "prod": "StatefulSet"}
    assert _ingress(render(KUBERNETES))["kind"] == "Deployment"


def test_the_spools_statefulset_runs_the_deployments_pod_plus_its_volume(tmp_path: Path):
    # kustomize takes relative paths only.
    base, component = (os.path.relpath(p, tmp_path) for p in (KUBERNETES, COMPONENT))
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\ncomponents: [{component}]\n"
    )
    spooling = render(tmp_path)
    assert INGRESS not in by_kind(spooling, "Deployment")
    deployment_pod = by_kind(render(KUBERNETES), "Deployment")[INGRESS]["spec"]["template"]
    statefulset_pod = copy.deepcopy(by_kind(spooling, "StatefulSet")[INGRESS]["spec"]["template"])
    spec = statefulset_pod["spec"]
    container = spec["containers"][0]
    spool_env = [e for e in container["env"] if e["name"].startswith("ONOFF_BRIDGE_SPOOL_")]
    assert {e["name"] for e in spool_env} == {
        "ONOFF_BRIDGE_SPOOL_ENABLED",
        "ONOFF_BRIDGE_SPOOL_DIRECTORY",
    }
    container["env"] = [e for e in container["env"] if e not in spool_env]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "spool"]
    assert spec.pop("terminationGracePeriodSeconds") > deployment_pod["spec"].pop(
        "terminationGracePeriodSeconds"
    )
    assert statefulset_pod == deployment_pod
    # What pointed at the Deployment (the HPA) points at the StatefulSet.
    targets = [
        m["spec"]["scaleTargetRef"] for m in spooling if "scaleTargetRef" in m.get("spec", {})
    ]
    assert {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": INGRESS} in targets
    assert all(t["kind"] != "Deployment" for t in targets if t["name"] == INGRESS)


def test_no_disruption_budget_sets_both_limits(workloads):
    # The API server refuses a PodDisruptionBudget with minAvailable and maxUnavailable.
    for budget in by_kind(workloads, "PodDisruptionBudget").values():
        assert not {"minAvailable", "maxUnavailable"} <= set(budget["spec"]), budget["metadata"]

"""A small kustomize: what `kubectl apply -k` would send, for the features our kustomizations use.

Supports `resources` (files and directories holding a kustomization), `namespace`,
`images` (newName, newTag, digest) and `configMapGenerator` with `files` and
`options` (labels, disableNameSuffixHash). Anything else in a kustomization is an
error, so a feature added there must be added here before the tests trust it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
MONITORING = ROOT / "deploy" / "monitoring"

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "configMapGenerator"}
# Kinds that live outside any namespace (kustomize leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

Manifest = dict[str, Any]


def load_file(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[Manifest]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: render.py does not know {sorted(unsupported)}"
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        manifests += render(path) if path.is_dir() else load_file(path)
    for generator in kustomization.get("configMapGenerator", []):
        options = generator.get("options", {})
        assert options.get("disableNameSuffixHash"), "render.py does not compute name hashes"
        data = {Path(f).name: (directory / f).read_text() for f in generator.get("files", [])}
        metadata = {"name": generator["name"], "labels": dict(options.get("labels", {}))}
        manifests.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )
    namespace = kustomization.get("namespace")
    if namespace:
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for manifest in manifests:
            for container in containers(manifest, init=True):
                if container["image"].split("@")[0].split(":")[0] == image["name"]:
                    container["image"] = _image_reference(image)
    return manifests


def _image_reference(image: dict[str, str]) -> str:
    reference = image.get("newName", image["name"])
    if "newTag" in image:
        reference += f":{image['newTag']}"
    if "digest" in image:
        reference += f"@{image['digest']}"
    return reference


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    if manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return spec
    return None


def containers(manifest: Manifest, *, init: bool = False) -> list[dict[str, Any]]:
    spec = pod_spec(manifest)
    if spec is None:
        return []
    return list(spec.get("initContainers", []) if init else []) + list(spec["containers"])


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}

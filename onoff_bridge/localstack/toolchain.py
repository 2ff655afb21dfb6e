"""Finds java and mvn and checks that they are usable, with one-line errors when not."""

from __future__ import annotations

import re
import shutil
import subprocess

from onoff_bridge.localstack.errors import ToolMissingError

MIN_JAVA = 17


def find_java(java: str) -> str:
    path = shutil.which(java)
    if path is None:
        raise ToolMissingError(
            f"java not found ({java!r}): install a JDK {MIN_JAVA}+ "
            "(Debian: apt-get install openjdk-17-jre-headless) or set ONOFF_BRIDGE_STACK_JAVA"
        )
    result = subprocess.run([path, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    if match is None or int(match.group(1)) < MIN_JAVA:
        raise ToolMissingError(f"{path} is not Java {MIN_JAVA}+; install a newer JDK")
    return path


def find_mvn(mvn: str) -> str:
    path = shutil.which(mvn)
    if path is None:
        raise ToolMissingError(
            f"mvn not found ({mvn!r}): install Maven "
            "(Debian: apt-get install maven) or set ONOFF_BRIDGE_STACK_MVN"
        )
    return path

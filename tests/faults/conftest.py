"""The fault matrix: each test runs `simulate`, injects one fault under the load, then `verify`.

A test that stops Kafka or the registry stops its own: `own_stack` is a broker
and a registry of the fault tests alone (`onoff_bridge.localstack.dedicated.DedicatedStack`),
started once for them all, never the session's shared stack, which other tests
use. The secured-cluster scenario uses the cluster tests' fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onoff_bridge.localstack.dedicated import DedicatedStack, dedicated_stack
from tests.cluster.conftest import cluster, layout, stack, stack_registry
from tests.cluster.helpers import new_layout
from tests.faults.pipeline import Pipeline, running_pipeline

__all__ = ["cluster", "layout", "stack", "stack_registry"]

_REPORTS: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.fault)
            # A run takes 1 to 2 minutes; one that fails waits out the simulator's linger
            # and verify's timeout before it can say what is missing.
            item.add_marker(pytest.mark.timeout(600))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _REPORTS:
        terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedStack]:
    """Started once for the fault tests, and stopped after the last of them, so the tests
    that follow in the session do not share the machine with a broker and a registry more."""
    began = time.monotonic()
    with dedicated_stack(tmp_path_factory.mktemp("fault-stack")) as started:
        _REPORTS.append(
            f"fault tests: own Kafka {started.kafka.bootstrap_servers} and registry "
            f"{started.registry.url}, up in {time.monotonic() - began:.0f}s"
        )
        yield started


@pytest.fixture
def plain(own_stack: DedicatedStack) -> DedicatedStack:
    """The fault tests' own stack, both services up (a failed test may have left one down)."""
    own_stack.up()
    return own_stack


@pytest.fixture
def pipeline(plain: DedicatedStack, tmp_path: Path) -> Iterator[Pipeline]:
    """Topics, ingress and processors of the test's own on `plain`, not started yet."""
    with running_pipeline(plain.endpoints, new_layout(), tmp_path) as made:
        yield made


Report = Callable[[str], None]


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Report]:
    """Collects what a scenario found, printed with its wall time at the end of the run."""
    began = time.monotonic()
    lines: list[str] = []
    yield lines.append
    outcome = "" if not lines else ": " + "; ".join(lines)
    _REPORTS.append(f"[{request.node.name}] {time.monotonic() - began:.0f}s{outcome}")

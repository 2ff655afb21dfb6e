from __future__ import annotations

import pytest

from tests.deploy.render import KUBERNETES, MONITORING, Manifest, render


@pytest.fixture(scope="session")
def workloads() -> list[Manifest]:
    return render(KUBERNETES)


@pytest.fixture(scope="session")
def monitoring() -> list[Manifest]:
    return render(MONITORING)

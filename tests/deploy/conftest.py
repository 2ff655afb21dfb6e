from __future__ import annotations

import pytest

from tests.deploy.render import KUBERNETES, MONITORING, OVERLAYS, Manifest, render

# The base and every overlay: each is what some environment applies, so each is checked.
KUSTOMIZATIONS = {"base": KUBERNETES, "dev": OVERLAYS / "dev", "prod": OVERLAYS / "prod"}


@pytest.fixture(scope="session", params=sorted(KUSTOMIZATIONS))
def workloads(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="session")
def monitoring() -> list[Manifest]:
    return render(MONITORING)

"""Each processor SIGKILLed at random moments under the load, several times, and restarted.

`worker all` runs dedupe, recordings and metrics each in a process of its own
and starts a dead one again (with its back-off), as under `make run`. The
kills land at moments drawn from a fixed seed, so a failing run can be
repeated. Whatever a killed processor had done but not committed, the next one
does again; `verify` then requires every call's versions 1..n with no gap and
any repeat identical, every recording stored once, and the metrics equal to a
recomputation from the final calls (each call counted once).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onoff_bridge.localstack.dedicated import DedicatedStack
from processors.topology import NAMES
from tests.cluster.helpers import new_layout
from tests.faults.conftest import Report
from tests.faults.pipeline import (
    Pipeline,
    Traffic,
    running_pipeline,
    statuses,
    verified,
    verify_summary,
)

SEED = 1302
# More traffic than the other scenarios, and the production commit interval (2 s, the
# other tests use 0.5 s): a kill then often lands on work done but not committed, which
# the next process does again.
TRAFFIC = Traffic(seed=SEED, rate=6.0, duration_s=30.0)
COMMIT_INTERVAL_S = "2"
KILLS_EACH = 3


def kill_plan(seed: int, within_s: tuple[float, float]) -> list[tuple[float, str]]:
    """KILLS_EACH moments per processor, spread over the load, at least 1.5 s apart."""
    rng = random.Random(seed)
    plan: list[tuple[float, str]] = []
    for name in NAMES:
        plan += [(rng.uniform(*within_s), name) for _ in range(KILLS_EACH)]
    plan.sort()
    spaced: list[tuple[float, str]] = []
    for at, name in plan:
        at = max(at, spaced[-1][0] + 1.5) if spaced else at
        spaced.append((round(at, 1), name))
    return spaced


@pytest.fixture
def pipeline(plain: DedicatedStack, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(
        plain.endpoints, new_layout(), tmp_path, ONOFF_BRIDGE_COMMIT_INTERVAL_S=COMMIT_INTERVAL_S
    ) as made:
        yield made


def test_processors_sigkilled_at_random_moments_lose_nothing_and_count_once(
    pipeline: Pipeline, report: Report
) -> None:
    plan = kill_plan(SEED, (3.0, TRAFFIC.duration_s + 6.0))
    pipeline.start()
    simulation = pipeline.simulate(TRAFFIC)
    killed: list[str] = []
    for at, name in plan:
        simulation.sleep_until(at)
        pid = pipeline.kill_worker(name)
        killed.append(f"{name}@{simulation.elapsed():.1f}s(pid {pid})")
    said = simulation.finish(timeout_s=360)
    checked = verified(pipeline.verify(simulation.ledger))

    report(f"killed {', '.join(killed)}; {said.strip().splitlines()[-1]}")
    report(verify_summary(checked))
    assert len(killed) == KILLS_EACH * len(NAMES)
    assert set(statuses(simulation.answers())) == {"200"}, "the ingress was not under test"
    # The supervisor started each processor again after every kill, and it still runs.
    deadline = time.monotonic() + 60
    while set(pipeline.worker_pids()) != set(NAMES):
        assert time.monotonic() < deadline, pipeline.worker_pids()
        time.sleep(0.5)
    assert pipeline.workers is not None and pipeline.workers.process.poll() is None

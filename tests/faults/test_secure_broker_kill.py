"""One of three brokers SIGKILLed under the load, on the secured cluster, and started again.

The production path: three KRaft brokers with a SASL_SSL listener, replication
factor 3 and `min.insync.replicas` 2 (`onoff-bridge stack up --secure`), and a
registry behind basic auth. The broker is killed at a moment and the victim is
chosen from a fixed seed. The ingress's acks=all producer and the processors
move to the partitions' new leaders; `verify` (over SASL_SSL too) then finds
every delivery answered 200 in its raw topic and everything downstream whole.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from onoff_bridge.localstack.secure import BROKERS, SecureEndpoints, SecureStack
from tests.cluster.helpers import Layout
from tests.faults.conftest import Report
from tests.faults.pipeline import Traffic, running_pipeline, statuses, verified, verify_summary

pytestmark = pytest.mark.cluster

SEED = 1306
TRAFFIC = Traffic(seed=SEED, retry_delay_s=3.0)
DOWN_FOR_S = 8.0


def test_a_broker_of_three_sigkilled_under_load_loses_nothing(
    cluster: SecureEndpoints, stack: SecureStack, layout: Layout, tmp_path: Path, report: Report
) -> None:
    rng = random.Random(SEED)
    victim, kill_at = rng.randint(1, BROKERS), rng.uniform(5.0, 12.0)
    broker = stack.process(f"kafka-{victim}")
    with running_pipeline(cluster, layout, tmp_path) as pipeline:
        pipeline.start()
        simulation = pipeline.simulate(TRAFFIC)
        try:
            simulation.sleep_until(kill_at)
            assert broker.kill()
            killed = time.time()
            time.sleep(DOWN_FOR_S)
        finally:
            if broker.pid() is None:
                stack.start_broker(victim)
            stack.wait_brokers()
        back = time.time()
        said = simulation.finish(timeout_s=360)
        checked = verified(pipeline.verify(simulation.ledger))

    answers = simulation.answers()
    during = statuses([a for a in answers if killed <= a["at"] <= back])
    report(f"kafka-{victim} killed at {kill_at:.1f}s, back after {back - killed:.0f}s")
    report(f"answers meanwhile {during}; {said.strip().splitlines()[-1]}")
    report(verify_summary(checked))
    assert during, "nothing was sent while the broker was down: the fault missed the load"
    assert set(statuses(answers)) <= {"200", "503"}, statuses(answers)
    assert ", gave up 0," in said, said

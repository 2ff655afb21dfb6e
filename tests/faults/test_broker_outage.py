"""Kafka stopped and started again under the load: nothing answered 200 is lost.

While the broker is away the ingress answers 503 with Retry-After, and the
sender's retries carry the events over the gap. With its spool on
(ONOFF_BRIDGE_SPOOL_ENABLED, off by default) the ingress answers 200 instead,
from the fsynced spool. Either way `verify` then finds every delivery answered
200 in its raw topic, every call's versions whole, every recording stored and
the metrics equal to a recomputation.
"""

from __future__ import annotations

import time

from onoff_bridge.localstack.dedicated import DedicatedStack
from tests.faults.conftest import Report
from tests.faults.pipeline import Pipeline, Traffic, statuses, verified, verify_summary

# The sender's 5 tries span about 4 x 5 s plus the answers' own time: the outage
# (a stop, 8 s down, a start that takes 5 to 30 s here) mostly fits inside it.
TRAFFIC = Traffic(seed=1301, retry_delay_s=5.0)
DOWN_AT_S = 6.0
DOWN_FOR_S = 8.0


def test_a_broker_stopped_and_started_under_load_loses_nothing(
    plain: DedicatedStack, pipeline: Pipeline, report: Report
) -> None:
    pipeline.start()
    simulation = pipeline.simulate(TRAFFIC)
    simulation.sleep_until(DOWN_AT_S)
    stopping = time.time()
    plain.kafka.stop()
    down = time.time()
    time.sleep(DOWN_FOR_S)
    plain.kafka.start()
    up = time.time()
    said = simulation.finish(timeout_s=360)
    checked = verified(pipeline.verify(simulation.ledger))

    answers = simulation.answers()
    during = statuses([a for a in answers if down <= a["at"] <= up])
    report(f"Kafka down {up - stopping:.0f}s; answers while down {during}")
    report(said.strip().splitlines()[-1])
    report(verify_summary(checked))
    # Never a 500 or a dropped connection: a clear 503, or a 200 that is kept.
    assert set(statuses(answers)) <= {"200", "503"}, statuses(answers)
    assert during, "nothing was sent while Kafka was down: the fault missed the load"
    if pipeline.spooling:
        assert set(during) == {"200"}, during
    else:
        assert "503" in during, during
    assert pipeline.ingress is not None and pipeline.ingress.process.poll() is None

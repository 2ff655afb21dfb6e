"""The registry stopped after start-up, under the load, and started again.

The ingress encodes with the schema ids it registered at start-up, so it keeps
answering 200 without the registry. Each processor is killed once while the
registry is away: the one `worker all` starts in its place cannot pass its
start-up check, so it waits (exiting and started again with a back-off) until
the registry is back, and then catches up. `verify` then finds nothing lost
and nothing counted twice.
"""

from __future__ import annotations

import contextlib
import time

import httpx

from onoff_bridge.localstack.dedicated import DedicatedStack
from processors.topology import NAMES
from tests.faults.conftest import Report
from tests.faults.pipeline import Pipeline, Traffic, statuses, verified, verify_summary

TRAFFIC = Traffic(seed=1303, linger_s=120.0)
DOWN_AT_S = 5.0
KILL_AT_S = 7.0
DOWN_FOR_S = 15.0


def healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def test_a_registry_stopped_under_load_stops_no_delivery_and_the_processors_catch_up(
    plain: DedicatedStack, pipeline: Pipeline, report: Report
) -> None:
    pipeline.start()
    simulation = pipeline.simulate(TRAFFIC)
    simulation.sleep_until(DOWN_AT_S)
    plain.registry.stop()
    down = time.time()
    simulation.sleep_until(KILL_AT_S)
    for name in NAMES:
        pipeline.kill_worker(name)
    simulation.sleep_until(DOWN_AT_S + DOWN_FOR_S)
    # Each processor started in the dead one's place waits for the registry.
    waiting = [
        name for name, url in zip(NAMES, pipeline.health_urls(), strict=True) if not healthy(url)
    ]
    plain.registry.launch()
    plain.registry.wait_ready()
    up = time.time()
    said = simulation.finish(timeout_s=420)
    checked = verified(pipeline.verify(simulation.ledger, timeout_s=120))

    answers = simulation.answers()
    during = statuses([a for a in answers if down <= a["at"] <= up])
    report(f"registry down {up - down:.0f}s; answers meanwhile {during}; waiting: {waiting}")
    report(said.strip().splitlines()[-1])
    report(verify_summary(checked))
    assert during, "nothing was sent while the registry was down: the fault missed the load"
    assert set(during) == {"200"}, f"the ingress needed the registry: {during}"
    assert set(statuses(answers)) == {"200"}, statuses(answers)
    assert waiting == list(NAMES), "a processor started without the registry"
    assert pipeline.workers is not None
    refused = pipeline.workers.log.read_text(errors="replace")
    for name in NAMES:
        assert f"worker {name} refuses to start: the schema registry" in refused, name

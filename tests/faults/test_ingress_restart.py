"""The ingress sent SIGTERM under the load, twice, and started again each time.

On SIGTERM the ingress stops accepting, lets the requests in flight finish,
flushes its producer and exits 0. Until the next one answers, the sender's
connections are refused, and its retries (4 more, `retry_delay_s` apart) carry
each event over the gap: nothing is given up on, and `verify` finds every
delivery answered 200 in its raw topic and everything downstream whole.
"""

from __future__ import annotations

import time

from tests.faults.conftest import Report
from tests.faults.pipeline import Pipeline, Traffic, statuses, verified, verify_summary

TRAFFIC = Traffic(seed=1304, retry_delay_s=3.0)
RESTARTS_AT_S = (6.0, 18.0)


def test_an_ingress_stopped_under_load_and_started_again_loses_nothing(
    pipeline: Pipeline, report: Report
) -> None:
    pipeline.start()
    simulation = pipeline.simulate(TRAFFIC)
    gaps: list[str] = []
    codes: list[int] = []
    for at in RESTARTS_AT_S:
        simulation.sleep_until(at)
        began = time.monotonic()
        codes.append(pipeline.stop_ingress())
        stopped = time.monotonic()
        pipeline.start_ingress().wait_healthy()
        gaps.append(
            f"stopped in {stopped - began:.1f}s, back after {time.monotonic() - began:.1f}s"
        )
    said = simulation.finish(timeout_s=300)
    checked = verified(pipeline.verify(simulation.ledger))

    answers = statuses(simulation.answers())
    report(f"SIGTERM x{len(codes)}: {'; '.join(gaps)}; answers {answers}")
    report(said.strip().splitlines()[-1])
    report(verify_summary(checked))
    assert codes == [0] * len(RESTARTS_AT_S), f"exit codes after SIGTERM: {codes}"
    assert ", gave up 0," in said, said
    # The gaps were real: some tries found no ingress (refused) and were tried again.
    assert set(answers) - {"200"}, f"no try met the gap: {answers}"
    assert set(answers) - {"200"} <= {"503", "ConnectError", "RemoteProtocolError"}, answers

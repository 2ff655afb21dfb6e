"""One simulation run: plan the traffic, serve its audio, send each delivery on time, log it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from onoff_bridge.simulation import ActivationFailedError
from onoff_bridge.simulation.audio import AudioFaults, serving_audio
from onoff_bridge.simulation.ledger import LedgerWriter, open_ledger
from onoff_bridge.simulation.sender import Attempt, WebhookSender
from onoff_bridge.simulation.settings import SimulationSettings
from onoff_bridge.simulation.traffic import Delivery, DeliveryKind, TrafficOptions, plan_traffic


@dataclass(frozen=True)
class RunOptions:
    traffic: TrafficOptions
    ledger: Path
    retry_delay_s: float = 0.5
    timeout_s: float = 10.0
    linger_s: float = 60.0  # how long to keep serving audio for the recordings worker
    concurrency: int = 32
    audio_faults: AudioFaults = field(default_factory=AudioFaults)


@dataclass
class RunSummary:
    sent: int = 0
    delivered: int = 0
    gave_up: int = 0
    retried: int = 0
    links: int = 0
    links_not_fetched: int = 0
    audio_answers: dict[str, int] = field(default_factory=dict)  # "200", "503", "cut", ...
    failed: set[int] = field(default_factory=set)  # seqs given up on


Progress = Callable[[int, int], None]  # (done, total)


def simulate(
    options: RunOptions, settings: SimulationSettings, progress: Progress | None = None
) -> RunSummary:
    return asyncio.run(_simulate(options, settings, progress or (lambda _d, _t: None)))


async def _simulate(
    options: RunOptions, settings: SimulationSettings, progress: Progress
) -> RunSummary:
    summary = RunSummary()
    now = datetime.now(UTC).replace(microsecond=0)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    with (
        serving_audio(options.audio_faults, settings.simulator_audio_port) as audio,
        open_ledger(options.ledger) as ledger,
    ):
        plan = plan_traffic(options.traffic, now, audio.base_url)
        ledger.run(
            seed=options.traffic.seed,
            startedAt=now.isoformat(),
            ingressUrl=settings.ingress_url,
            audioBase=audio.base_url,
            options={
                "rate": options.traffic.rate,
                "durationS": options.traffic.duration_s,
                "timeScale": options.traffic.time_scale,
                "retryDelayS": options.retry_delay_s,
                "timeoutS": options.timeout_s,
                "audioFailureShare": options.audio_faults.failure_share,
                "audioDelayS": options.audio_faults.delay_s,
            },
            deliveries=len(plan.deliveries),
        )
        for link in plan.links:
            ledger.audio(link)
        summary.links = len(plan.links)
        limits = httpx.Limits(max_connections=options.concurrency)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            sender = WebhookSender(
                client,
                settings.ingress_url,
                key,
                retry_delay_s=options.retry_delay_s,
                timeout_s=options.timeout_s,
            )
            total = len(plan.deliveries)
            first, rest = plan.deliveries[0], plan.deliveries[1:]
            assert first.kind is DeliveryKind.ACTIVATION
            if not await _send(sender, ledger, first, summary):
                raise ActivationFailedError(
                    "the activation test payload was not accepted; Onoff would not activate"
                )
            progress(1, total)
            started = time.monotonic()
            gate = asyncio.Semaphore(options.concurrency)

            async def due(delivery: Delivery) -> None:
                await asyncio.sleep(max(0.0, started + delivery.due_s - time.monotonic()))
                async with gate:
                    await _send(sender, ledger, delivery, summary)
                progress(summary.sent, total)

            await asyncio.gather(*(due(delivery) for delivery in rest))
        delivered_ids = {d.id for d in plan.deliveries if d.seq not in summary.failed}
        wanted = [link for link in plan.links if link.call_id in delivered_ids]
        left = await asyncio.to_thread(audio.wait_fetched, wanted, options.linger_s)
        summary.links_not_fetched = len(left)
        summary.audio_answers = dict(sorted(audio.answers.items()))
        ledger.done(
            finishedAt=datetime.now(UTC).isoformat(),
            sent=summary.sent,
            delivered=summary.delivered,
            gaveUp=summary.gave_up,
            retried=summary.retried,
            linksNotFetched=[link.url for link in left],
            audioAnswers=summary.audio_answers,
        )
    return summary


async def _send(
    sender: WebhookSender, ledger: LedgerWriter, delivery: Delivery, summary: RunSummary
) -> bool:
    body = orjson.dumps(delivery.body)
    ledger.event(delivery, body)

    def record(attempt: Attempt) -> None:
        ledger.answer(
            delivery,
            attempt.number,
            attempt.status,
            attempt.error,
            attempt.quarantined,
            attempt.elapsed_ms,
        )

    outcome = await sender.send(delivery.path, body, record)
    summary.sent += 1
    summary.retried += int(len(outcome.attempts) > 1)
    if outcome.delivered:
        summary.delivered += 1
        return True
    summary.gave_up += 1
    summary.failed.add(delivery.seq)
    ledger.gave_up(delivery, len(outcome.attempts), outcome.last_failure)
    return False

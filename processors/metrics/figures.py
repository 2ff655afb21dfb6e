"""What one call adds to a window, and the figures a window reports: pure values, no state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from processors.metrics.windows import UnplaceableCallError, Window, from_millis

# A call's talk time above this cannot be counted: with at most 2**31 calls in a
# window, its sum then always fits the long of UserCallMetrics (2**63 - 1).
MAX_TALK_SECONDS = 2**32


class Contribution(NamedTuple):
    """What one call version adds to a window; stored as a JSON list."""

    inbound: int
    outbound: int
    answered: int
    missed: int
    voicemail: int
    recorded: int
    talk_seconds: int


def contribution_of(call: Mapping[str, Any]) -> Contribution:
    direction = (call.get("callDirection") or "").upper()
    status = (call.get("callStatus") or "").upper()
    answered = status == "ANSWERED"
    voicemail = not answered and (status == "VOICEMAIL" or bool(call.get("voicemailUrls")))
    # Talk time is the duration of answered calls only; rings and voicemails are not talk.
    talk_seconds = max(0, int(call.get("callDuration") or 0)) if answered else 0
    if talk_seconds > MAX_TALK_SECONDS:
        raise UnplaceableCallError(
            f"cannot place the call: a talk time of {talk_seconds} s is beyond what a window sums"
        )
    return Contribution(
        inbound=int(direction == "INBOUND"),
        outbound=int(direction == "OUTBOUND"),
        answered=int(answered),
        missed=int(not answered and not voicemail),
        voicemail=int(voicemail),
        recorded=int(bool(call.get("callRecordingUrls"))),
        talk_seconds=talk_seconds,
    )


class Figures(NamedTuple):
    calls_total: int = 0
    inbound: int = 0
    outbound: int = 0
    answered: int = 0
    missed: int = 0
    voicemails: int = 0
    recorded: int = 0
    talk_seconds_total: int = 0
    talk_seconds_max: int = 0
    last_updated_ms: int = 0

    @property
    def talk_seconds_avg(self) -> float:
        return self.talk_seconds_total / self.answered if self.answered else 0.0


def metrics_record(window: Window, figures: Figures) -> dict[str, Any]:
    """The UserCallMetrics record (Avro dict) of a window."""
    return {
        "userKey": window.user,
        "granularity": window.granularity.value,
        "windowStart": window.start,
        "windowEnd": window.end,
        "callsTotal": figures.calls_total,
        "inbound": figures.inbound,
        "outbound": figures.outbound,
        "answered": figures.answered,
        "missed": figures.missed,
        "voicemails": figures.voicemails,
        "recorded": figures.recorded,
        "talkSecondsTotal": figures.talk_seconds_total,
        "talkSecondsAvg": figures.talk_seconds_avg,
        "talkSecondsMax": figures.talk_seconds_max,
        "lastUpdatedAt": from_millis(figures.last_updated_ms),
    }

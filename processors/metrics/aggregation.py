"""Per-window figures kept as each call's contribution, so replays replace rather than add.

Two steps, both pure; `processor.py` runs them as two Faust agents:

1. `plan` (per call, in the partition of the call id): a call version becomes one
   `Update` per window the call has ever counted in. The windows of this version
   receive its contribution, every other window it touched before receives a
   retraction (a contribution of None). Each update carries the call's version.
2. `apply_update` (per window, in the partition of its user): a window keeps, per
   call id, the entry of the highest version seen: last writer wins by version.
   A repeated or older update changes nothing.

Because every version's updates describe the call's whole footprint, the final
state depends only on the highest version applied to each window, whatever the
order, repeats or losses of earlier updates. The figures are derived from the
entries each time, never accumulated.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from processors.metrics.windows import Window, from_millis, to_millis, windows_of


class Contribution(NamedTuple):
    """What one call version adds to a window; stored as a JSON list."""

    inbound: int
    outbound: int
    answered: int
    missed: int
    voicemail: int
    recorded: int
    talk_seconds: int


# [version, lastUpdatedAt millis of that version, contribution or None when retracted]
Entry = list[Any]


def contribution_of(call: Mapping[str, Any]) -> Contribution:
    direction = (call.get("callDirection") or "").upper()
    status = (call.get("callStatus") or "").upper()
    answered = status == "ANSWERED"
    voicemail = not answered and (status == "VOICEMAIL" or bool(call.get("voicemailUrls")))
    return Contribution(
        inbound=int(direction == "INBOUND"),
        outbound=int(direction == "OUTBOUND"),
        answered=int(answered),
        missed=int(not answered and not voicemail),
        voicemail=int(voicemail),
        recorded=int(bool(call.get("callRecordingUrls"))),
        # Talk time is the duration of answered calls only; rings and voicemails are not talk.
        talk_seconds=max(0, int(call.get("callDuration") or 0)) if answered else 0,
    )


@dataclass(frozen=True)
class Figures:
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


def figures_of(entries: Iterable[Entry]) -> Figures:
    """The figures of a window from its entries; retracted calls count nothing.

    lastUpdatedAt is the latest of the versions counted; for a window emptied by
    retractions, the latest retraction, so its record still says when it changed.
    """
    total = talk_max = 0
    sums = [0] * len(Contribution._fields)
    counted_ms = retracted_ms = 0
    for _version, updated_ms, contribution in entries:
        if contribution is None:
            retracted_ms = max(retracted_ms, updated_ms)
            continue
        total += 1
        counted_ms = max(counted_ms, updated_ms)
        for i, value in enumerate(contribution):
            sums[i] += value
        talk_max = max(talk_max, contribution[-1])
    c = Contribution(*sums)
    return Figures(
        calls_total=total,
        inbound=c.inbound,
        outbound=c.outbound,
        answered=c.answered,
        missed=c.missed,
        voicemails=c.voicemail,
        recorded=c.recorded,
        talk_seconds_total=c.talk_seconds,
        talk_seconds_max=talk_max,
        last_updated_ms=counted_ms if total else retracted_ms,
    )


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


@dataclass(frozen=True)
class Update:
    """One call's entry for one window: a message of the contributions topic."""

    window: str  # Window.key
    call_id: str
    entry: Entry

    def to_json(self) -> dict[str, Any]:
        return {"id": self.call_id, "e": self.entry}

    @classmethod
    def from_json(cls, window: str, value: Mapping[str, Any]) -> Update:
        return cls(window, value["id"], list(value["e"]))


@dataclass(frozen=True)
class CallState:
    """What step 1 remembers of a call: the version applied and every window it touched."""

    version: int
    touched: tuple[str, ...]  # Window keys, sorted

    def to_json(self) -> dict[str, Any]:
        return {"v": self.version, "w": list(self.touched)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CallState:
        return cls(int(value["v"]), tuple(value["w"]))


class Decision(enum.Enum):
    NEW_VERSION = "new_version"
    REPEAT = "repeat"  # the version applied last, again: its updates are sent again
    STALE = "stale"  # older than the version applied: nothing to do


def plan(
    state: CallState | None, call: Mapping[str, Any], horizon: datetime | None = None
) -> tuple[Decision, CallState, list[Update]]:
    """What a call version does: the updates to send and the call's state afterwards.

    A repeat of the version last applied sends its updates again rather than
    nothing: after a crash the state may have been saved while some updates were
    lost, and the window side ignores the ones that did land. Windows that end
    before `horizon` are past the retention: they receive nothing more and are
    forgotten.
    """
    version = int(call["version"])
    if state is not None and version < state.version:
        return Decision.STALE, state, []
    decision = (
        Decision.REPEAT if state is not None and version == state.version else Decision.NEW_VERSION
    )
    current = {w.key for w in windows_of(call) if horizon is None or w.end >= horizon}
    touched = current.union(state.touched if state is not None else ())
    if horizon is not None:
        touched = {key for key in touched if Window.parse(key).end >= horizon}
    updated_ms = to_millis(call["lastUpdatedAt"])
    contribution = list(contribution_of(call))
    updates = [
        Update(key, call["id"], [version, updated_ms, contribution if key in current else None])
        for key in sorted(touched)
    ]
    return decision, CallState(version, tuple(sorted(touched))), updates


class Applied(enum.Enum):
    CHANGED = "changed"
    REPEAT = "repeat"  # this version's entry is already there
    STALE = "stale"  # a higher version's entry is already there


def apply_update(entries: MutableMapping[str, Entry], update: Update) -> Applied:
    """Stores an update's entry in a window's entries (call id -> entry) if its version is newer."""
    current = entries.get(update.call_id)
    if current is not None:
        if update.entry[0] == current[0]:
            return Applied.REPEAT
        if update.entry[0] < current[0]:
            return Applied.STALE
    entries[update.call_id] = update.entry
    return Applied.CHANGED


class Aggregator:
    """Both steps in memory, in one process: the reference the tests and benchmarks drive."""

    def __init__(self) -> None:
        self.calls: dict[str, CallState] = {}
        self.windows: dict[str, dict[str, Entry]] = {}

    def plan(self, call: Mapping[str, Any]) -> list[Update]:
        _decision, state, updates = plan(self.calls.get(call["id"]), call)
        self.calls[call["id"]] = state
        return updates

    def apply(self, update: Update) -> Applied:
        return apply_update(self.windows.setdefault(update.window, {}), update)

    def figures(self) -> dict[str, Figures]:
        """Figures of every window that counts at least one call."""
        return {
            key: figures
            for key, entries in self.windows.items()
            if (figures := figures_of(entries.values())).calls_total
        }

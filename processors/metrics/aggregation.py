"""How each call is counted once per window: step 1 (`plan`) and both steps in memory.

Two steps, both pure; `processor.py` runs them as two Faust agents:

1. `plan` (per call, in the partition of the call id): a call version becomes one
   `Update` per window the call has ever counted in. The windows of this version
   receive its contribution, every other window it touched before receives a
   retraction (a contribution of None). Each update carries the call's version.
   A call that cannot be placed in a window raises UnplaceableCallError; a
   version whose windows all ended before the retention horizon is LATE.
2. `tally.apply_batch` (per window, in the partition of its user): the call's
   share of the window takes the highest version seen, and the window's
   running sums move from the old contribution to the new one. A repeated or
   older update changes nothing.

Because every version's updates describe the call's whole footprint, the final
state depends only on the highest version applied to each window, whatever the
order, repeats or losses of earlier updates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from processors.metrics.figures import Contribution, Figures, contribution_of
from processors.metrics.tally import Applied, Counted, Share, Tally, apply_batch, refill
from processors.metrics.windows import Window, updated_millis, windows_of

# [version, lastUpdatedAt millis of that version, contribution or None when retracted]
Entry = list[Any]

# The fields of a Call that `plan` reads (its windows, contribution and version): the
# worker decodes only these (a test checks that plan decides the same on them alone).
CALL_FIELDS = (
    "id",
    "version",
    "onoffUserEmail",
    "onoffUserNumber",
    "callStarted",
    "callDirection",
    "callStatus",
    "callDuration",
    "voicemailUrls",
    "callRecordingUrls",
    "lastUpdatedAt",
)


class Update(NamedTuple):
    """One call's entry for one window; a batch's updates of one user travel in one
    contributions message, as [window, call id, entry] triples."""

    window: str  # Window.key
    call_id: str
    entry: Entry

    @property
    def version(self) -> int:
        return int(self.entry[0])

    @property
    def updated_ms(self) -> int:
        return int(self.entry[1])

    @property
    def contribution(self) -> Contribution | None:
        return None if self.entry[2] is None else Contribution(*self.entry[2])

    @property
    def counted(self) -> Counted:
        """What the window counts for the call once this update is applied."""
        return Counted(self.version, self.updated_ms, self.contribution)


class CallState(NamedTuple):
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
    LATE = "late"  # its windows all ended before the retention horizon: not counted


def plan(
    state: CallState | None, call: Mapping[str, Any], horizon: datetime | None = None
) -> tuple[Decision, CallState | None, list[Update]]:
    """What a call version does: the updates to send and the call's state afterwards.

    A repeat of the version last applied sends its updates again rather than
    nothing: after a crash the state may have been saved while some updates were
    lost, and the window side ignores the ones that did land. Windows that end
    before `horizon` are past the retention: they receive nothing more and are
    forgotten; a version whose windows all are is LATE and changes nothing.

    Raises UnplaceableCallError for a call no window can hold.
    """
    version = int(call["version"])
    windows = windows_of(call)
    contribution = list(contribution_of(call))
    updated_ms = updated_millis(call)
    if horizon is not None and windows and all(w.end < horizon for w in windows):
        return Decision.LATE, state, []
    if state is not None and version < state.version:
        return Decision.STALE, state, []
    decision = (
        Decision.REPEAT if state is not None and version == state.version else Decision.NEW_VERSION
    )
    current = {w.key for w in windows if horizon is None or w.end >= horizon}
    touched = set(current)
    for key in state.touched if state is not None else ():
        # This version's windows are placed already; only the others are parsed.
        if key not in touched and (horizon is None or Window.parse(key).end >= horizon):
            touched.add(key)
    updates = [
        Update(key, call["id"], [version, updated_ms, contribution if key in current else None])
        for key in sorted(touched)
    ]
    return decision, CallState(version, tuple(sorted(touched))), updates


class Aggregator:
    """Both steps in memory, in one process: the reference the tests and benchmarks drive."""

    def __init__(self) -> None:
        self.calls: dict[str, CallState] = {}
        self.tallies: dict[str, Tally] = {}
        self.shares: dict[str, dict[str, Share]] = {}  # window key -> call id -> share
        self.mark = 0

    def plan(self, call: Mapping[str, Any]) -> list[Update]:
        _decision, state, updates = plan(self.calls.get(call["id"]), call)
        if state is not None:
            self.calls[call["id"]] = state
        return updates

    def apply(self, update: Update) -> Applied:
        """Applies one update, as a batch of its own."""
        return self.apply_all([update])[0]

    def apply_all(self, updates: list[Update]) -> list[Applied]:
        """Applies a batch of updates, window by window, as the windows agent does."""
        self.mark += 1
        by_window: dict[str, list[int]] = {}
        for index, update in enumerate(updates):
            by_window.setdefault(update.window, []).append(index)
        outcomes: dict[int, Applied] = {}
        for window, batch in by_window.items():
            shares = self.shares.setdefault(window, {})
            result = apply_batch(
                self.tallies.get(window),
                shares,
                [(updates[i].call_id, updates[i].counted) for i in batch],
                self.mark,
            )
            shares.update(result.shares)
            tally = result.tally
            if tally.exhausted:
                tally = refill(tally, (s.counted(tally.mark) for s in shares.values()))
            self.tallies[window] = tally
            outcomes.update(zip(batch, result.outcomes, strict=True))
        return [outcomes[i] for i in range(len(updates))]

    def figures(self) -> dict[str, Figures]:
        """Figures of every window that counts at least one call."""
        return {
            key: figures
            for key, tally in self.tallies.items()
            if (figures := tally.figures()).calls_total
        }

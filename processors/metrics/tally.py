"""A window's running figures and each call's share of them: step 2 of the metrics, pure.

Two kinds of record live in the windows table, both written while handling one
update (so both in the partition of the window's user):

- the window's `Tally` (key: the window key): its sequence number, the number
  of calls counted, the sums of their contributions, and two `Top`s, the
  largest talk times and the latest lastUpdatedAt of the calls counted. Its
  size does not depend on how many calls the window counts.
- one `Share` per (window, call) (key: `share_key`): the call's version applied
  to the window, its contribution (None once retracted), the contribution it
  replaced, and the window's sequence number when it was applied.

`apply_update` is everything the windows agent decides for one update. A newer
version replaces the call's share: its old contribution leaves the sums and
the new one enters them, and the window's sequence number goes up by one. An
update whose version is not newer than the share's changes nothing. The share
is written before the tally; after a crash between the two writes the share's
sequence number is ahead of the window's, and the next update of that share
(the replay of the same one comes first) applies the share's change again from
the contribution it replaced (`previous`), so it counts exactly once.

A maximum cannot be undone by subtraction. A `Top` holds exactly the values at
or above its floor, as (value, how many calls) pairs, at most TOP_VALUES
distinct ones: removing a value above the floor is exact. Only when removals
empty it while calls are still counted (at least TOP_VALUES distinct values
left the top since it was last filled) must it be refilled from the window's
shares (`refill`), which the worker finds by scanning its table.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from processors.metrics.figures import Contribution, Figures

TOP_VALUES = 8
NOTHING = Contribution(0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Top:
    """The largest values of a window's counted calls: exact for every value >= `floor`.

    `values` holds (value, count) pairs, largest first; `floor` None means it
    holds every value.
    """

    values: tuple[tuple[int, int], ...] = ()
    floor: int | None = None

    @property
    def exhausted(self) -> bool:
        """Empty, though values below the floor may still be counted: refill it."""
        return not self.values and self.floor is not None

    @property
    def largest(self) -> int:
        return self.values[0][0] if self.values else 0

    def add(self, value: int) -> Top:
        if self.floor is not None and value < self.floor:
            return self
        counts = dict(self.values)
        counts[value] = counts.get(value, 0) + 1
        return _top(counts, self.floor)

    def remove(self, value: int) -> Top:
        if self.floor is not None and value < self.floor:
            return self
        counts = dict(self.values)
        left = counts.get(value, 0) - 1
        if left > 0:
            counts[value] = left
        else:
            counts.pop(value, None)
        return Top(tuple(sorted(counts.items(), reverse=True)), self.floor)

    @classmethod
    def of(cls, values: Iterable[int]) -> Top:
        return _top(Counter(values), None)

    def to_json(self) -> list[Any]:
        return [[list(pair) for pair in self.values], self.floor]

    @classmethod
    def from_json(cls, value: list[Any]) -> Top:
        pairs, floor = value
        return cls(tuple((int(v), int(c)) for v, c in pairs), floor)


def _top(counts: Mapping[int, int], floor: int | None) -> Top:
    values = sorted(counts.items(), reverse=True)
    if len(values) > TOP_VALUES:
        values = values[:TOP_VALUES]
        floor = values[-1][0]  # the values below it are no longer held
    return Top(tuple(values), floor)


@dataclass(frozen=True)
class Share:
    """One call's part in one window."""

    version: int
    updated_ms: int  # lastUpdatedAt of that version
    contribution: Contribution | None  # None: retracted, counts nothing
    seq: int  # the window's sequence number once this share was applied
    previous: Contribution | None = None  # what it replaced, to apply it again after a crash
    previous_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "m": self.updated_ms,
            "c": None if self.contribution is None else list(self.contribution),
            "q": self.seq,
            "o": None if self.previous is None else list(self.previous),
            "om": self.previous_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Share:
        return cls(
            version=int(value["v"]),
            updated_ms=int(value["m"]),
            contribution=_contribution(value["c"]),
            seq=int(value["q"]),
            previous=_contribution(value["o"]),
            previous_ms=int(value["om"]),
        )


def _contribution(value: list[int] | None) -> Contribution | None:
    return None if value is None else Contribution(*value)


@dataclass(frozen=True)
class Tally:
    """A window's figures as running sums, with its sequence number."""

    seq: int = 0
    calls: int = 0
    sums: Contribution = NOTHING
    talk: Top = Top()
    updated: Top = Top()
    retracted_ms: int = 0  # the latest retraction: lastUpdatedAt of a window left empty

    @property
    def exhausted(self) -> bool:
        return self.talk.exhausted or self.updated.exhausted

    def moved(
        self, old: Contribution | None, old_ms: int, new: Contribution | None, new_ms: int
    ) -> Tally:
        """The tally once a call's share goes from `old` to `new` (None: counts nothing)."""
        calls, sums, talk, updated = self.calls, list(self.sums), self.talk, self.updated
        retracted_ms = self.retracted_ms
        if old is not None:
            calls -= 1
            sums = [s - o for s, o in zip(sums, old, strict=True)]
            talk, updated = talk.remove(old.talk_seconds), updated.remove(old_ms)
        if new is not None:
            calls += 1
            sums = [s + n for s, n in zip(sums, new, strict=True)]
            talk, updated = talk.add(new.talk_seconds), updated.add(new_ms)
        else:
            retracted_ms = max(retracted_ms, new_ms)
        if calls == 0:  # nothing counted: nothing below any floor either
            talk, updated = Top(), Top()
        return Tally(self.seq, calls, Contribution(*sums), talk, updated, retracted_ms)

    def figures(self) -> Figures:
        s = self.sums
        return Figures(
            calls_total=self.calls,
            inbound=s.inbound,
            outbound=s.outbound,
            answered=s.answered,
            missed=s.missed,
            voicemails=s.voicemail,
            recorded=s.recorded,
            talk_seconds_total=s.talk_seconds,
            talk_seconds_max=self.talk.largest,
            last_updated_ms=self.updated.largest if self.calls else self.retracted_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "q": self.seq,
            "n": self.calls,
            "s": list(self.sums),
            "tt": self.talk.to_json(),
            "ut": self.updated.to_json(),
            "r": self.retracted_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Tally:
        return cls(
            seq=int(value["q"]),
            calls=int(value["n"]),
            sums=Contribution(*value["s"]),
            talk=Top.from_json(value["tt"]),
            updated=Top.from_json(value["ut"]),
            retracted_ms=int(value["r"]),
        )


def refill(tally: Tally, shares: Iterable[Share]) -> Tally:
    """The tally with both tops rebuilt from every share of its window."""
    counted = [s for s in shares if s.contribution is not None]
    return replace(
        tally,
        talk=Top.of(s.contribution.talk_seconds for s in counted if s.contribution is not None),
        updated=Top.of(s.updated_ms for s in counted),
    )


class Applied(enum.Enum):
    CHANGED = "changed"
    REPEAT = "repeat"  # this version's share is already there
    STALE = "stale"  # a higher version's share is already there


@dataclass(frozen=True)
class Step:
    """What one update does to a window: the share to write (if any), then the tally."""

    applied: Applied
    tally: Tally
    share: Share | None  # None: the share stays as it is
    tally_changed: bool  # also True when a share saved before a crash was applied again


def apply_update(
    tally: Tally | None,
    share: Share | None,
    version: int,
    updated_ms: int,
    contribution: Contribution | None,
) -> Step:
    """One call version's update of one window, given the window's tally and the call's share."""
    current = tally or Tally()
    repaired = False
    if share is not None and share.seq > current.seq:
        # The share was saved and the tally was not: apply the share's change now.
        current = replace(
            current.moved(share.previous, share.previous_ms, share.contribution, share.updated_ms),
            seq=share.seq,
        )
        repaired = True
    if share is not None and version <= share.version:
        applied = Applied.REPEAT if version == share.version else Applied.STALE
        return Step(applied, current, None, repaired)
    seq = current.seq + 1
    new = Share(
        version,
        updated_ms,
        contribution,
        seq,
        previous=None if share is None else share.contribution,
        previous_ms=0 if share is None else share.updated_ms,
    )
    moved = current.moved(new.previous, new.previous_ms, contribution, updated_ms)
    return Step(Applied.CHANGED, replace(moved, seq=seq), new, True)


def share_key(window_key: str, call_id: str) -> str:
    """The windows-table key of a call's share of a window: a JSON pair, never a window key."""
    return json.dumps([window_key, call_id], separators=(",", ":"))


def share_prefix(window_key: str) -> str:
    """What every share key of the window starts with, and no other window's does
    (JSON escapes every quote inside the window key)."""
    return json.dumps([window_key], separators=(",", ":"))[:-1] + ","


def parse_share_key(key: str) -> tuple[str, str] | None:
    """(window key, call id) of a share key; None for any other key."""
    if not key.startswith('["'):
        return None
    try:
        pair = json.loads(key)
    except ValueError:
        return None
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
        return pair[0], pair[1]
    return None


def from_entries(entries: Mapping[str, list[Any]]) -> tuple[Tally, dict[str, Share]]:
    """A window kept in the format before 0.x's tallies ({call id: [version, lastUpdatedAt,
    contribution or None]}) as a tally and its shares, so a worker upgrades in place."""
    shares = {
        call_id: Share(int(version), int(updated_ms), _contribution(contribution), seq=0)
        for call_id, (version, updated_ms, contribution) in entries.items()
    }
    tally = Tally()
    for share in shares.values():
        tally = tally.moved(None, 0, share.contribution, share.updated_ms)
    return refill(tally, shares.values()), shares

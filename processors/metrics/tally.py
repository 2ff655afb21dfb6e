"""A window's running figures and each call's share of them: step 2 of the metrics, pure.

Two kinds of record live in the windows table, both written while handling one
update (so both in the partition of the window's user):

- the window's `Tally` (key: the window key): its sequence number, the number
  of calls counted, the sums of their contributions, and two `Top`s, the
  largest talk times and the latest lastUpdatedAt of the calls counted. Its
  size does not depend on how many calls the window counts.
- one `Share` per (window, call) (key: `share_key`): what the window counts for
  the call (its version, lastUpdatedAt and contribution, None once retracted),
  what the tally counted for it before, and the mark of the batch that wrote it.

`apply_batch` is everything the windows agent decides for one window and one
batch of updates. Per call, the highest version wins: a newer version's
contribution replaces the old one in the sums; an update whose version is not
newer changes nothing. The batch's shares are written first, then the tally
once, both carrying the batch's mark: the offset of its last update in the
contributions partition, which only grows. The tally's write commits the
batch: a share whose mark is above its window's tally's was written by a batch
whose tally never landed (a crash between the writes), so the tally still
counts what the share held before (`committed`). The replay of that batch
(its offsets were not committed either) meets every such share again and
applies it once. Marks are offsets, not per-window counters, because a replay
may be cut into batches other than the first time: a share written by the
lost batch and not reached by a shorter replay batch keeps a mark above that
batch's, so it still reads as not counted.

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
from json.encoder import encode_basestring_ascii as _json_string
from operator import add, sub
from typing import Any, NamedTuple

from processors.metrics.figures import Contribution, Figures

TOP_VALUES = 8
NOTHING = Contribution(0, 0, 0, 0, 0, 0, 0)


class Top(NamedTuple):
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
        floor = self.floor
        if floor is not None and value < floor:
            return self
        # One pass over at most TOP_VALUES pairs, largest first: what sorting the
        # counts again would give, without building and sorting a dict each time.
        values = self.values
        for i, (held, count) in enumerate(values):
            if held == value:
                return _new_top((*values[:i], (held, count + 1), *values[i + 1 :]), floor)
            if held < value:
                grown = (*values[:i], (value, 1), *values[i:])
                break
        else:
            grown = (*values, (value, 1))
        if len(grown) > TOP_VALUES:
            grown = grown[:TOP_VALUES]
            floor = grown[-1][0]  # the values below it are no longer held
        return _new_top(grown, floor)

    def remove(self, value: int) -> Top:
        floor = self.floor
        if floor is not None and value < floor:
            return self
        values = self.values
        for i, (held, count) in enumerate(values):
            if held == value:
                if count > 1:
                    return _new_top((*values[:i], (held, count - 1), *values[i + 1 :]), floor)
                return _new_top((*values[:i], *values[i + 1 :]), floor)
        return self

    @classmethod
    def of(cls, values: Iterable[int]) -> Top:
        return _top(Counter(values), None)

    def to_json(self) -> list[Any]:
        # Tuples: orjson writes them as JSON arrays, and the memory store keeps them as they are.
        return [self.values, self.floor]

    @classmethod
    def from_json(cls, value: list[Any]) -> Top:
        pairs, floor = value
        return cls(tuple(map(tuple, pairs)), floor)


def _new_top(values: tuple[tuple[int, int], ...], floor: int | None) -> Top:
    # Top(values, floor) without the generated __new__'s Python frame: built per update.
    return tuple.__new__(Top, (values, floor))


def _top(counts: Mapping[int, int], floor: int | None) -> Top:
    values = sorted(counts.items(), reverse=True)
    if len(values) > TOP_VALUES:
        values = values[:TOP_VALUES]
        floor = values[-1][0]  # the values below it are no longer held
    return Top(tuple(values), floor)


class Counted(NamedTuple):
    """What a window counts for one call: the version applied, its lastUpdatedAt, and its
    contribution (None: retracted, the call counts nothing there)."""

    version: int
    updated_ms: int
    contribution: Contribution | None


def _counted_json(counted: Counted | None) -> list[Any] | None:
    if counted is None:
        return None
    contribution = None if counted.contribution is None else list(counted.contribution)
    return [counted.version, counted.updated_ms, contribution]


def _counted(value: list[Any] | None) -> Counted | None:
    if value is None:
        return None
    version, updated_ms, contribution = value
    return Counted(int(version), int(updated_ms), _contribution(contribution))


# The mark of a share or tally written before marks existed: every such share counts.
UNMARKED = -1


class Share(NamedTuple):
    """One call's part in one window."""

    current: Counted
    committed: Counted | None  # what the tally counts for the call until this share's batch lands
    mark: int  # the mark of the batch that wrote it

    def counted(self, tally_mark: int) -> Counted | None:
        """What a tally of that mark counts for the call (None: nothing, never seen)."""
        return self.current if self.mark <= tally_mark else self.committed

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.mark,
            "c": _counted_json(self.current),
            "b": _counted_json(self.committed),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Share:
        if "k" not in value:
            # Written one update at a time, before batches: counted once its tally was.
            old = Counted(int(value["v"]), int(value["m"]), _contribution(value["c"]))
            return cls(old, None, UNMARKED)
        current = _counted(value["c"])
        assert current is not None
        return cls(current, _counted(value["b"]), int(value["k"]))


def _contribution(value: list[int] | None) -> Contribution | None:
    return None if value is None else Contribution(*value)


class Tally(NamedTuple):
    """A window's figures as running sums, with the mark of the batch that wrote it."""

    mark: int = UNMARKED
    calls: int = 0
    sums: Contribution = NOTHING
    talk: Top = Top()
    updated: Top = Top()
    retracted_ms: int = 0  # the latest retraction: lastUpdatedAt of a window left empty

    @property
    def exhausted(self) -> bool:
        return self.talk.exhausted or self.updated.exhausted

    def moved(self, old: Counted | None, new: Counted) -> Tally:
        """The tally once a call goes from being counted as `old` to `new`."""
        calls, sums, talk, updated = self.calls, self.sums, self.talk, self.updated
        retracted_ms = self.retracted_ms
        gone = None if old is None else old.contribution
        if gone is not None:
            assert old is not None
            calls -= 1
            sums = _contribution_of(map(sub, sums, gone))
            talk = talk.remove(gone.talk_seconds)
            updated = updated.remove(old.updated_ms)
        added = new.contribution
        if added is not None:
            calls += 1
            sums = _contribution_of(map(add, sums, added))
            talk, updated = talk.add(added.talk_seconds), updated.add(new.updated_ms)
        elif new.updated_ms > retracted_ms:
            retracted_ms = new.updated_ms
        if calls == 0:  # nothing counted: nothing below any floor either
            talk = updated = _EMPTY_TOP
        return tuple.__new__(Tally, (self.mark, calls, sums, talk, updated, retracted_ms))

    def marked(self, mark: int) -> Tally:
        """The tally with another mark (`_replace(mark=...)` costs several times as much)."""
        return tuple.__new__(Tally, (mark, *self[1:]))

    def figures(self) -> Figures:
        # Positional, in Figures' field order: built for every window a batch touches.
        calls, (inbound, outbound, answered, missed, voicemail, recorded, talk) = (
            self.calls,
            self.sums,
        )
        return tuple.__new__(
            Figures,
            (
                calls,
                inbound,
                outbound,
                answered,
                missed,
                voicemail,
                recorded,
                talk,
                self.talk.largest,
                self.updated.largest if calls else self.retracted_ms,
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.mark,
            "n": self.calls,
            "s": list(self.sums),
            "tt": self.talk.to_json(),
            "ut": self.updated.to_json(),
            "r": self.retracted_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Tally:
        return cls(
            mark=int(value.get("k", UNMARKED)),
            calls=int(value["n"]),
            sums=Contribution(*value["s"]),
            talk=Top.from_json(value["tt"]),
            updated=Top.from_json(value["ut"]),
            retracted_ms=int(value["r"]),
        )


_EMPTY_TOP = Top()


def _contribution_of(values: Iterable[int]) -> Contribution:
    # tuple.__new__ with the iterable: Contribution(*values) without unpacking it first.
    return tuple.__new__(Contribution, values)


def refill(tally: Tally, counted: Iterable[Counted | None]) -> Tally:
    """The tally with both tops rebuilt from what it counts for every call of its window."""
    values = [c for c in counted if c is not None and c.contribution is not None]
    return tally._replace(
        talk=Top.of(c.contribution.talk_seconds for c in values if c.contribution is not None),
        updated=Top.of(c.updated_ms for c in values),
    )


class Applied(enum.Enum):
    CHANGED = "changed"
    REPEAT = "repeat"  # this version is already counted
    STALE = "stale"  # a higher version is already counted


class WindowBatch(NamedTuple):
    """What one batch does to a window: the shares to write, then the tally (if `shares`)."""

    tally: Tally
    shares: dict[str, Share]  # call id -> share; empty: nothing to write
    outcomes: tuple[Applied, ...]  # one per update, in order

    @property
    def repeated(self) -> bool:
        """Some update was counted already: its record may have been lost, send it again."""
        return Applied.REPEAT in self.outcomes


def apply_batch(
    tally: Tally | None,
    shares: Mapping[str, Share],
    updates: Iterable[tuple[str, Counted]],
    mark: int,
) -> WindowBatch:
    """A batch of (call id, version) updates of one window, in the order they came.

    `shares` holds the stored share of each call the updates name (absent: none);
    `mark` is the offset of the batch's last update.
    """
    base = tally or Tally()
    # A replay batch shorter than the lost one may end below a tally that did land: its
    # updates are all counted there already, and a mark never goes back.
    mark = max(mark, base.mark)
    current = base
    before: dict[str, Counted | None] = {}  # what the stored tally counts, per call touched
    now: dict[str, Counted | None] = {}
    outcomes = []
    for call_id, new in updates:
        if call_id not in now:
            stored = shares.get(call_id)
            now[call_id] = before[call_id] = None if stored is None else stored.counted(base.mark)
        old = now[call_id]
        if old is not None and new.version <= old.version:
            outcomes.append(Applied.REPEAT if new.version == old.version else Applied.STALE)
            continue
        current = current.moved(old, new)
        now[call_id] = new
        outcomes.append(Applied.CHANGED)
    written = {}
    for call_id, counted in now.items():
        stored = shares.get(call_id)
        # A share not yet counted by its tally is written again even when nothing changed
        # it, so that no share with a mark above the new tally's is left behind.
        if counted is not None and (
            stored is None or stored.current != counted or stored.mark > base.mark
        ):
            written[call_id] = Share(counted, before[call_id], mark)
    if written:
        current = current.marked(mark)
    return WindowBatch(current, written, tuple(outcomes))


def share_key(window_key: str, call_id: str) -> str:
    """The windows-table key of a call's share of a window: a JSON pair, never a window key.

    Exactly `json.dumps([window_key, call_id], separators=(",", ":"))`, through the
    standard library's C string encoder without the generic dumps around it.
    """
    return f"[{_json_string(window_key)},{_json_string(call_id)}]"


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
        call_id: Share(
            Counted(int(version), int(updated_ms), _contribution(contribution)), None, UNMARKED
        )
        for call_id, (version, updated_ms, contribution) in entries.items()
    }
    tally = Tally()
    for share in shares.values():
        tally = tally.moved(None, share.current)
    return refill(tally, (s.current for s in shares.values())), shares

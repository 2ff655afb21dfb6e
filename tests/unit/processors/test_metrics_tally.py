"""The windows side of the metrics: running sums stay exact through any order, repeat and crash,
and a window's record stays small whatever number of calls it counts."""

from __future__ import annotations

import io
import json
import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.metrics.aggregation import Aggregator, Update
from processors.metrics.figures import Contribution, metrics_record
from processors.metrics.tally import (
    TOP_VALUES,
    UNMARKED,
    Counted,
    Share,
    Tally,
    Top,
    apply_batch,
    from_entries,
    parse_share_key,
    refill,
    share_key,
    share_prefix,
)
from processors.metrics.windows import Window
from schemas import SchemaName
from schemas.catalog import load_schema
from tests.unit.processors.test_metrics_aggregation import (
    T0,
    call,
    histories,
    recompute,
    records,
    shuffled_with_repeats,
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_top_always_knows_the_largest_value_counted(data: st.DataObject) -> None:
    counted: Counter[int] = Counter()
    top = Top()
    flip = st.booleans()
    for _ in range(data.draw(st.integers(0, 80))):
        if bool(counted) and data.draw(flip):
            value = data.draw(st.sampled_from(sorted(counted)))
            counted[value] -= 1
            counted += Counter()  # drops the zeros
            top = top.remove(value)
        else:
            value = data.draw(st.integers(0, 30))
            counted[value] += 1
            top = top.add(value)
        if not counted:
            top = Top()  # what Tally.moved does once a window counts nothing
        if top.exhausted:
            top = Top.of(counted.elements())
        assert top.largest == max(counted, default=0)
        assert len(top.values) <= TOP_VALUES
        held = {v: c for v, c in counted.items() if top.floor is None or v >= top.floor}
        assert dict(top.values) == held
        assert list(top.values) == sorted(held.items(), reverse=True)  # largest first


def test_keys_of_shares_never_collide_with_windows_or_each_other() -> None:
    window = 'we/ird"@example.com/day/2026-03-02T00:00:00+00:00'
    other = window[:-1]
    key = share_key(window, 'c-"1"')
    assert parse_share_key(key) == (window, 'c-"1"')
    assert key.startswith(share_prefix(window))
    assert not share_key(window + '","x', "c").startswith(share_prefix(window))
    assert not share_key(other, "c").startswith(share_prefix(window))
    assert parse_share_key(window) is None
    assert parse_share_key('["x/day/2026-03-02T00:00:00+00:00"') is None


@given(st.text(), st.text(), st.text())
def test_a_share_key_starts_with_its_own_window_prefix_only(a: str, b: str, call_id: str) -> None:
    assert parse_share_key(share_key(a, call_id)) == (a, call_id)
    assert share_key(b, call_id).startswith(share_prefix(a)) == (a == b)


class CrashingWindows:
    """The windows agent over a changelog, with batches, commits and crashes as Kafka and Faust
    make them.

    A batch is a run of updates (offsets) taken together; per window it writes
    the calls' shares, then the window's tally, with the batch's last offset as
    mark. Offsets are committed after some batches, once the writes before them
    landed. A crash keeps the committed state plus any prefix of the later
    writes (one partition, one producer: in order), and processing starts again
    from the committed offset, in batches that need not be the same.
    """

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        self.committed: dict[str, Any] = {}
        self.pending: list[tuple[str, Any]] = []

    def write(self, key: str, value: Any) -> None:
        value = json.loads(json.dumps(value))  # what the changelog gives back
        self.store[key] = value
        self.pending.append((key, value))

    def handle(self, updates: list[Update], mark: int) -> None:
        """What MetricsProcessor.handle_updates does to its table for one batch."""
        by_window: dict[str, list[Update]] = {}
        for update in updates:
            by_window.setdefault(update.window, []).append(update)
        for window, batch in by_window.items():
            stored_tally = self.store.get(window)
            shares = {
                u.call_id: Share.from_json(value)
                for u in batch
                if (value := self.store.get(share_key(window, u.call_id))) is not None
            }
            result = apply_batch(
                None if stored_tally is None else Tally.from_json(stored_tally),
                shares,
                [(u.call_id, u.counted) for u in batch],
                mark,
            )
            for call_id, share in result.shares.items():
                self.write(share_key(window, call_id), share.to_json())
            tally = result.tally
            if tally.exhausted:
                prefix = share_prefix(window)
                every = {
                    k: Share.from_json(v) for k, v in self.store.items() if k.startswith(prefix)
                }
                tally = refill(tally, (s.counted(tally.mark) for s in every.values()))
            if result.shares:
                # The worker keeps the Tally it wrote rather than parse it again: the same.
                assert Tally.from_json(json.loads(json.dumps(tally.to_json()))) == tally
                self.write(window, tally.to_json())

    def commit(self) -> None:
        self.committed = dict(self.store)
        self.pending = []

    def crash(self, kept: int) -> None:
        self.store = dict(self.committed)
        for key, value in self.pending[:kept]:
            self.store[key] = value
        self.committed = dict(self.store)  # what the changelog now holds
        self.pending = []

    def records(self) -> dict[str, dict[str, Any]]:
        tallies = {
            key: Tally.from_json(value)
            for key, value in self.store.items()
            if parse_share_key(key) is None
        }
        return {
            key: metrics_record(Window.parse(key), tally.figures())
            for key, tally in tallies.items()
            if tally.calls
        }


@settings(max_examples=300, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_any_order_repeats_batches_and_crashes_between_writes_give_the_recomputation(
    data: st.DataObject, seed: int
) -> None:
    versions = data.draw(histories())
    planner = Aggregator()
    updates = [u for v in shuffled_with_repeats(data, versions) for u in planner.plan(v)]
    updates = shuffled_with_repeats(data, updates)
    rng = random.Random(seed)
    windows = CrashingWindows()
    committed_at = position = crashes = 0
    while position < len(updates):
        size = rng.randint(1, 6)
        batch = updates[position : position + size]
        position += len(batch)
        windows.handle(batch, mark=position - 1)
        roll = rng.random()
        if roll < 0.3:
            windows.commit()
            committed_at = position
        elif roll < 0.6 and crashes < 8:
            crashes += 1
            windows.crash(rng.randint(0, len(windows.pending)))
            position = committed_at
    assert windows.records() == recompute(versions)


def test_a_share_saved_without_its_tally_is_applied_once_by_a_shorter_replay() -> None:
    key = "ada@example.com/day/2026-03-02T00:00:00+00:00"
    windows = CrashingWindows()
    windows.handle([Update(key, "c-1", [1, 100, [1, 0, 1, 0, 0, 0, 60]])], mark=0)
    windows.commit()
    second = [
        Update(key, "c-1", [2, 200, [1, 0, 1, 0, 0, 0, 90]]),
        Update(key, "c-2", [1, 150, [1, 0, 1, 0, 0, 0, 30]]),
    ]
    windows.handle(second, mark=2)
    windows.crash(kept=2)  # both shares landed, the tally did not
    share = Share.from_json(windows.store[share_key(key, "c-2")])
    assert (share.current.version, share.mark, Tally.from_json(windows.store[key]).mark) == (
        1,
        2,
        0,
    )
    # The replay takes the first update alone: c-2's share must still read as uncounted.
    windows.handle(second[:1], mark=1)
    windows.handle(second[:1], mark=1)  # a repeat of it changes nothing
    windows.handle(second[1:], mark=2)
    tally = Tally.from_json(windows.store[key])
    figures = tally.figures()
    assert (figures.calls_total, figures.talk_seconds_total, figures.talk_seconds_max) == (
        2,
        120,
        90,
    )
    assert tally.mark == 2


def test_a_batch_moves_each_call_once_and_keeps_what_the_tally_counted_before() -> None:
    result = apply_batch(
        None,
        {},
        [
            ("c-1", Counted(1, 100, Contribution(1, 0, 1, 0, 0, 0, 60))),
            ("c-1", Counted(2, 200, None)),
            ("c-1", Counted(1, 100, Contribution(1, 0, 1, 0, 0, 0, 60))),
            ("c-2", Counted(1, 300, Contribution(0, 1, 0, 1, 0, 0, 0))),
            ("c-2", Counted(1, 300, Contribution(0, 1, 0, 1, 0, 0, 0))),
        ],
        mark=7,
    )
    assert [a.value for a in result.outcomes] == [
        "changed",
        "changed",
        "stale",
        "changed",
        "repeat",
    ]
    assert result.shares == {
        "c-1": Share(Counted(2, 200, None), None, 7),
        "c-2": Share(Counted(1, 300, Contribution(0, 1, 0, 1, 0, 0, 0)), None, 7),
    }
    assert result.tally.mark == 7 and result.repeated
    figures = result.tally.figures()
    assert (figures.calls_total, figures.missed, figures.last_updated_ms) == (1, 1, 300)


def test_retractions_that_empty_the_top_refill_it_from_the_shares() -> None:
    aggregator = Aggregator()
    calls = [call(f"c-{n}", callDuration=n) for n in range(3 * TOP_VALUES)]
    for c in calls:
        for update in aggregator.plan(c):
            aggregator.apply(update)
    # The longest calls move to the next day, one by one: the top empties and refills.
    moved = [
        call(f"c-{n}", version=2, callDuration=n, callStarted=T0 + timedelta(days=1))
        for n in range(3 * TOP_VALUES - 1, TOP_VALUES - 1, -1)
    ]
    for c in moved:
        for update in aggregator.plan(c):
            aggregator.apply(update)
    assert records(aggregator) == recompute([*calls, *moved])
    day = records(aggregator)["ada@example.com/day/2026-03-02T00:00:00+00:00"]
    assert (day["callsTotal"], day["talkSecondsMax"]) == (TOP_VALUES, TOP_VALUES - 1)


def test_a_window_kept_as_entries_becomes_a_tally_and_shares() -> None:
    entries: dict[str, list[Any]] = {
        "a": [1, 100, [1, 0, 1, 0, 0, 0, 60]],
        "b": [3, 300, None],
        "c": [2, 200, [0] * 7],
    }
    tally, shares = from_entries(entries)
    figures = tally.figures()
    assert (figures.calls_total, figures.talk_seconds_total, figures.talk_seconds_max) == (
        2,
        60,
        60,
    )
    assert figures.last_updated_ms == 200
    assert shares["b"] == Share(Counted(3, 300, None), None, UNMARKED)
    assert tally.mark == UNMARKED


def serialized(value: Any, partition: int = 5) -> bytes:
    """The bytes the windows changelog holds for a table value (faust's json codec)."""
    return json.dumps({"p": partition, **value}).encode()


def test_one_user_with_100000_calls_in_one_day_keeps_a_small_window_record() -> None:
    """100,000 calls of one user in one day, some moved to another hour or shortened later:
    the figures equal the recomputation, and the day's record stays a few hundred bytes.

    Before tallies the day's record held every call's entry: its size is printed too.
    """
    rng = random.Random(17)
    aggregator = Aggregator()
    versions = []
    started = time.monotonic()
    for n in range(100_000):
        minute = rng.randrange(24 * 60)
        versions.append(
            call(
                f"c-{n:06d}",
                callStarted=T0.replace(hour=0) + timedelta(minutes=minute),
                callStatus=rng.choice(["ANSWERED", "ANSWERED", "MISSED", "VOICEMAIL"]),
                callDuration=rng.randrange(3600),
                callDirection=rng.choice(["INBOUND", "OUTBOUND"]),
            )
        )
        if n % 50 == 0:  # a later version: another hour, and a shorter call
            versions.append(
                versions[-1]
                | {
                    "version": 2,
                    "callStarted": versions[-1]["callStarted"] + timedelta(minutes=61),
                    "callDuration": 1,
                    "lastUpdatedAt": versions[-1]["lastUpdatedAt"] + timedelta(seconds=5),
                }
            )
    largest = 0
    day = "ada@example.com/day/2026-03-02T00:00:00+00:00"
    for version in versions:
        for update in aggregator.plan(version):
            aggregator.apply(update)
            if update.window == day:
                largest = max(largest, len(serialized(aggregator.tallies[day].to_json())))
    elapsed = time.monotonic() - started
    old_format = len(
        serialized(
            {
                "calls": {
                    c: [s.current.version, s.current.updated_ms, s.current.contribution]
                    for c, s in aggregator.shares[day].items()
                }
            }
        )
    )
    largest_share = max(
        len(serialized(s.to_json())) + len(share_key(day, c))
        for c, s in aggregator.shares[day].items()
    )
    print(
        f"\n100,000 calls in one day: window record at most {largest} bytes "
        f"(the format before tallies: {old_format:,} bytes), "
        f"largest share record {largest_share} bytes, {elapsed:.1f} s"
    )
    expected = recompute(versions)
    got = records(aggregator)
    assert got[day]["callsTotal"] > 99_000 and got == expected
    assert largest < 1024
    assert old_format > 1_000_000  # what Kafka refused: the test is about that size
    # The records of every window can be written as UserCallMetrics.
    schema = fastavro.parse_schema(json.loads(load_schema(SchemaName.USER_CALL_METRICS)))
    for record in got.values():
        fastavro.schemaless_writer(io.BytesIO(), schema, record)


@given(st.text(), st.text())
def test_a_share_key_is_the_json_pair_it_always_was(window: str, call_id: str) -> None:
    assert share_key(window, call_id) == json.dumps([window, call_id], separators=(",", ":"))

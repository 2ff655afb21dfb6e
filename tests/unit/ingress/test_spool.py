"""The spool on a real directory: durable, ordered, bounded, crash-safe, group-committed."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ingress.spool as spool_module
from ingress.spool import (
    SEGMENT_SUFFIX,
    Spool,
    SpooledRecord,
    SpoolFullError,
    claim_directory,
    decode_payload,
    encode_record,
    read_frames,
)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def fill(spool: Spool, count: int, size: int = 10, start: int = 0) -> None:
    await asyncio.gather(
        *(
            spool.append("onoff.cdr.raw", f"call-{i}", f"{i:0{size}d}".encode())
            for i in range(start, start + count)
        )
    )


class Recorder:
    """Stands in for the Kafka send; fails the records listed in `fail` once each."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.sent: list[str] = []
        self.fail = set(fail or ())

    async def __call__(self, record: SpooledRecord) -> None:
        if record.key in self.fail:
            self.fail.discard(record.key)
            raise RuntimeError("broker down")
        self.sent.append(record.key)


async def pending_at_most(spool: Spool, count: int, timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if spool.pending <= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{spool.pending} records still pending, expected at most {count}")


async def drain_until(spool: Spool, send: Callable[[SpooledRecord], Awaitable[None]]) -> None:
    task = asyncio.create_task(spool.drain(send, batch=7, first_delay_s=0.001))
    try:
        await pending_at_most(spool, 0)
    finally:
        task.cancel()


@given(
    topic=st.text(max_size=40),
    key=st.text(max_size=40),
    value=st.binary(max_size=2000),
    value_format=st.sampled_from(["avro", "CallEvent"]),
    stamp=st.integers(min_value=0, max_value=2**63),
)
def test_a_record_round_trips_through_its_frame(
    topic: str, key: str, value: bytes, value_format: str, stamp: int
) -> None:
    record = SpooledRecord(topic, key, value_format, value, stamp)
    frame = encode_record(record)
    assert [r for _, _, r in read_frames(frame)] == [record]
    assert decode_payload(frame[8:]) == record


@settings(max_examples=200)
@given(cut=st.integers(min_value=1, max_value=60), flip=st.integers(min_value=8, max_value=40))
def test_a_torn_or_corrupt_last_frame_is_never_read(cut: int, flip: int) -> None:
    frames = [encode_record(SpooledRecord("t", f"k{i}", "avro", b"v" * 30, i)) for i in range(3)]
    data = b"".join(frames)
    torn = data[: len(data) - min(cut, len(frames[2]))]
    assert [r.key for _, _, r in read_frames(torn)] == ["k0", "k1"]
    corrupt = bytearray(data)
    corrupt[len(data) - len(frames[2]) + min(flip, len(frames[2]) - 1)] ^= 0xFF
    assert [r.key for _, _, r in read_frames(bytes(corrupt))] == ["k0", "k1"]


def test_records_survive_a_reopen_and_drain_in_order(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        first = Spool(tmp_path)
        await fill(first, 50)
        await first.close()
        second = Spool(tmp_path)
        assert second.pending == 50
        sent = Recorder()
        await drain_until(second, sent)
        return sent.sent

    assert run(scenario()) == [f"call-{i}" for i in range(50)]
    assert not list(tmp_path.glob(f"*{SEGMENT_SUFFIX}")), "a drained segment was kept"


def test_a_torn_last_record_is_cut_off_with_a_log_line_and_the_rest_drains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def write() -> None:
        spool = Spool(tmp_path)
        await fill(spool, 5)
        await spool.close()

    run(write())
    (segment,) = tmp_path.glob(f"*{SEGMENT_SUFFIX}")
    os.truncate(segment, segment.stat().st_size - 3)  # power lost during the last write

    async def reopen() -> list[str]:
        spool = Spool(tmp_path)
        assert spool.pending == 4
        sent = Recorder()
        await drain_until(spool, sent)
        return sent.sent

    with caplog.at_level(logging.WARNING, "ingress.spool"):
        assert run(reopen()) == [f"call-{i}" for i in range(4)]
    assert any("torn record" in r.getMessage() for r in caplog.records)


def test_a_failed_send_is_retried_in_order(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        spool = Spool(tmp_path)
        await fill(spool, 30)
        sent = Recorder(fail={"call-3", "call-17"})
        await drain_until(spool, sent)
        return sent.sent

    sent = run(scenario())
    # At least once: what followed a failure in its batch goes again, so the last copy of
    # every record is in spool order.
    assert set(sent) == {f"call-{i}" for i in range(30)}
    lasts = [len(sent) - 1 - sent[::-1].index(f"call-{i}") for i in range(30)]
    assert lasts == sorted(lasts)
    assert len(sent) < 30 + 2 * 7


def test_a_partly_drained_spool_resumes_where_it_stopped(tmp_path: Path) -> None:
    async def first_run() -> None:
        spool = Spool(tmp_path)
        await fill(spool, 20)
        sent = Recorder(fail={f"call-{i}" for i in range(10, 20)})
        task = asyncio.create_task(spool.drain(sent, batch=5, max_delay_s=60))
        await pending_at_most(spool, 10)
        task.cancel()
        await spool.close()

    async def second_run() -> list[str]:
        spool = Spool(tmp_path)
        assert spool.pending == 10
        sent = Recorder()
        await drain_until(spool, sent)
        return sent.sent

    run(first_run())
    assert run(second_run()) == [f"call-{i}" for i in range(10, 20)]


def test_the_size_cap_refuses_and_keeps_what_it_has(tmp_path: Path) -> None:
    async def scenario() -> int:
        spool = Spool(tmp_path, max_bytes=4096)
        accepted = 0
        with pytest.raises(SpoolFullError):
            for i in range(1000):
                await spool.append("t", f"call-{i}", b"x" * 100)
                accepted += 1
        assert spool.bytes_used <= 4096
        sent = Recorder()
        await drain_until(spool, sent)
        assert sent.sent == [f"call-{i}" for i in range(accepted)]
        await spool.append("t", "after", b"x" * 100)  # room again once drained
        return accepted

    assert 20 < run(scenario()) < 40


def test_segments_roll_and_each_is_deleted_once_drained(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path, segment_bytes=1000)
        await fill(spool, 100, size=20)
        assert len(spool_module.list_segments(tmp_path)) > 3
        sent = Recorder()
        await drain_until(spool, sent)
        assert sent.sent == [f"call-{i}" for i in range(100)]
        assert spool.bytes_used == 0
        await fill(spool, 3, start=100)
        await spool.close()

    run(scenario())
    assert Spool(tmp_path).pending == 3


def test_one_fsync_covers_many_concurrent_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = 0
    real = spool_module._fsync_all

    def counting(*args: Any) -> None:
        nonlocal syncs
        syncs += 1
        real(*args)

    monkeypatch.setattr(spool_module, "_fsync_all", counting)

    async def scenario() -> None:
        spool = Spool(tmp_path)
        await fill(spool, 500)
        assert spool.pending == 500

    run(scenario())
    assert 1 <= syncs < 50


def test_the_oldest_age_follows_the_drain(tmp_path: Path) -> None:
    now = [1000.0]

    async def scenario() -> None:
        spool = Spool(tmp_path, clock=lambda: now[0])
        assert spool.oldest_age_s() == 0
        await spool.append("t", "a", b"1")
        now[0] += 30
        await spool.append("t", "b", b"2")
        now[0] += 10
        assert spool.oldest_age_s() == pytest.approx(40)
        sent = Recorder(fail={"b"})
        task = asyncio.create_task(spool.drain(sent, batch=1, first_delay_s=60))
        await pending_at_most(spool, 1)
        assert spool.oldest_age_s() == pytest.approx(10)
        task.cancel()

    run(scenario())


def test_each_process_claims_its_own_directory_and_a_successor_takes_it_back(
    tmp_path: Path,
) -> None:
    first, first_lock = claim_directory(tmp_path)
    second, second_lock = claim_directory(tmp_path)
    assert first != second
    os.close(first_lock)  # the first process died
    again, again_lock = claim_directory(tmp_path)
    assert again == first
    os.close(second_lock)
    os.close(again_lock)


def test_after_a_failure_the_drain_probes_with_one_record_before_sending_batches(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[int]:
        spool = Spool(tmp_path)
        await fill(spool, 40)
        sizes: list[int] = []
        down = [True]
        in_flight = [0]
        three_attempts = asyncio.Event()

        async def send(record: SpooledRecord) -> None:
            in_flight[0] += 1
            await asyncio.sleep(0)  # the whole batch is in flight before any answer
            if in_flight[0]:
                sizes.append(in_flight[0])
                in_flight[0] = 0
            if len(sizes) >= 3:
                three_attempts.set()
            if down[0]:
                raise RuntimeError("broker down")

        task = asyncio.create_task(spool.drain(send, batch=10, first_delay_s=0.001))
        await asyncio.wait_for(three_attempts.wait(), 10)
        down[0] = False
        await pending_at_most(spool, 0)
        task.cancel()
        return sizes

    sizes = run(scenario())
    # Kafka away: one record per attempt, so at most one can be written twice per attempt.
    # Back: the probe goes alone, then full batches.
    assert sizes[:4] == [1, 1, 1, 1]
    assert sizes[4:] == [10, 10, 10, 9]


def test_a_drain_until_empty_returns_and_stop_draining_ends_one_that_waits(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[str]:
        spool = Spool(tmp_path)
        await fill(spool, 5)
        sent = Recorder()
        await asyncio.wait_for(spool.drain(sent, until_empty=True), 10)
        waiting = asyncio.create_task(spool.drain(sent))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        spool.stop_draining()
        await asyncio.wait_for(waiting, 10)
        await spool.close()
        return sent.sent

    assert run(scenario()) == [f"call-{i}" for i in range(5)]


def test_full_is_set_by_a_refused_append_and_cleared_by_the_drain(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path, max_bytes=1024)
        assert not spool.full
        with pytest.raises(SpoolFullError):
            for i in range(100):
                await spool.append("t", f"call-{i}", b"x" * 100)
        assert spool.full
        await drain_until(spool, Recorder())
        assert not spool.full

    run(scenario())


def test_a_short_write_is_cut_off_so_the_next_record_follows_the_last_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:  # the disk filled up mid-record
        return real_write(fd, data[: len(data) // 2])

    async def scenario() -> list[str]:
        spool = Spool(tmp_path)
        await spool.append("t", "first", b"1" * 50)
        monkeypatch.setattr(os, "write", half_write)
        with pytest.raises(OSError, match="short write"):
            await spool.append("t", "lost", b"2" * 50)
        monkeypatch.setattr(os, "write", real_write)
        await spool.append("t", "second", b"3" * 50)
        await spool.close()
        reopened = Spool(tmp_path)
        sent = Recorder()
        await drain_until(reopened, sent)
        return sent.sent

    assert run(scenario()) == ["first", "second"]

"""The traffic plan: same seed, same traffic; the mix of kinds; later deliveries share ids."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onoff_bridge.simulation.audio import audio_bytes, audio_sha256
from onoff_bridge.simulation.traffic import (
    ACTIVATION_PAYLOAD,
    CDR_PATH,
    SMS_PATH,
    DeliveryKind,
    LinkBehaviour,
    TrafficOptions,
    plan_traffic,
)

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
BASE = "http://127.0.0.1:9"


def _plan(seed: int = 3, **options: Any):
    return plan_traffic(
        TrafficOptions(seed=seed, rate=20, duration_s=30, time_scale=60, **options), NOW, BASE
    )


def test_the_same_seed_plans_the_same_traffic_and_another_seed_does_not() -> None:
    assert _plan(3) == _plan(3)
    assert [d.body for d in _plan(3).deliveries] != [d.body for d in _plan(4).deliveries]


def test_the_plan_has_every_kind_of_delivery_and_call() -> None:
    plan = _plan()
    kinds = Counter(d.kind for d in plan.deliveries)
    assert kinds[DeliveryKind.ACTIVATION] == 1
    assert all(kinds[k] > 5 for k in DeliveryKind if k is not DeliveryKind.ACTIVATION), kinds
    first = [d.body for d in plan.deliveries if d.kind is DeliveryKind.CALL]
    assert {b["callStatus"] for b in first} >= {"ANSWERED", "MISSED", "VOICEMAIL"}
    assert {b["callDirection"] for b in first} == {"INBOUND", "OUTBOUND"}
    assert {b["eventName"] for b in first} == {"CDR", "VM"}
    assert any(b.get("callNotes") for b in first) and any(b.get("tags") for b in first)
    numbers: dict[str, set[str]] = {}
    for body in first:
        numbers.setdefault(body["onoffUserEmail"], set()).add(body["onoffUserNumber"])
    assert any(len(owned) > 1 for owned in numbers.values())
    assert {b["smsDirection"] for b in (d.body for d in plan.deliveries) if "smsDirection" in b}
    paths = {d.kind: d.path for d in plan.deliveries}
    assert paths[DeliveryKind.SMS] == SMS_PATH and paths[DeliveryKind.CALL] == CDR_PATH
    assert {link.behaviour for link in plan.links} == set(LinkBehaviour)


def test_the_activation_payload_goes_first() -> None:
    first = _plan().deliveries[0]
    assert (first.kind, first.due_s, first.body) == (DeliveryKind.ACTIVATION, 0, ACTIVATION_PAYLOAD)


def test_updates_and_recordings_reuse_the_call_id_minutes_later_scaled() -> None:
    plan = _plan()
    calls = {d.id: d for d in plan.deliveries if d.kind is DeliveryKind.CALL}
    updates = [d for d in plan.deliveries if d.kind is DeliveryKind.UPDATE]
    recordings = [d for d in plan.deliveries if d.kind is DeliveryKind.RECORDING]
    for update in updates:
        call = calls[update.id]
        assert update.due_s - call.due_s == pytest.approx(
            5.0, abs=0.002
        )  # 5 minutes at --time-scale 60
        assert len(update.body["callNotes"]) > len(call.body.get("callNotes") or "")
        assert len(update.body["tags"]) >= len(call.body.get("tags") or [])
        assert update.body["callStarted"] == call.body["callStarted"]
    for recording in recordings:
        call = calls[recording.id]
        assert 4.99 <= recording.due_s - call.due_s <= 8.01
        assert recording.body["eventName"] == "RECORDING"
        assert recording.body["callRecordingUrl"].startswith(BASE + "/audio/")
        assert call.body["callStatus"] == "ANSWERED"


def test_calls_are_recent_so_they_are_inside_the_retentions() -> None:
    for delivery in _plan().deliveries[1:]:
        moment = delivery.body.get("callStarted") or delivery.body["date"]
        started = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        assert NOW - timedelta(hours=1) < started <= NOW + timedelta(seconds=30)


def test_audio_is_deterministic_per_link() -> None:
    link = _plan().links[0]
    assert audio_bytes(link.path) == audio_bytes(link.path)
    assert audio_sha256(link.path) != audio_sha256(link.path + "x")
    assert 2048 <= len(audio_bytes(link.path)) <= 8192


def test_a_heavy_user_takes_that_many_calls_all_on_the_runs_day() -> None:
    late = datetime(2026, 12, 2, 23, 59, 50, tzinfo=UTC)  # the run crosses midnight
    plan = plan_traffic(
        TrafficOptions(seed=3, rate=20, duration_s=30, heavy_user_calls=400), late, BASE
    )
    firsts = [d.body for d in plan.deliveries if d.kind is DeliveryKind.CALL]
    heavy = [b for b in firsts if b["onoffUserEmail"].startswith("heavy.user.")]
    assert len(heavy) == 400 and len({b["id"] for b in heavy}) == 400
    assert {b["callStarted"][:10] for b in heavy} == {"2026-12-02"}
    # The rest of the plan is drawn as without a heavy user.
    plain = plan_traffic(TrafficOptions(seed=3, rate=20, duration_s=30), late, BASE)
    assert len(plan.deliveries) != len(plain.deliveries)
    with pytest.raises(ValueError, match="only 600 planned"):
        plan_traffic(
            TrafficOptions(seed=3, rate=20, duration_s=30, heavy_user_calls=601), NOW, BASE
        )


def test_poison_calls_are_dated_at_both_ends_of_the_calendar() -> None:
    plan = plan_traffic(
        TrafficOptions(seed=3, rate=20, duration_s=30, poison_calls=True), NOW, BASE
    )
    poison = {d.id: d.body for d in plan.deliveries if "-poison-" in d.id}
    assert sorted(b["callStarted"] for b in poison.values()) == [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ]
    plain = plan_traffic(TrafficOptions(seed=3, rate=20, duration_s=30), NOW, BASE)
    assert [d.body for d in plan.deliveries if "-poison-" not in d.id] == [
        d.body for d in plain.deliveries
    ]

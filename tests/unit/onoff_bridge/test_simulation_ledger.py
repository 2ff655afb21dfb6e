"""The ledger: what is written reads back; accepted means a 2xx that was not quarantined."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ingress.webhooks import content_sha256
from onoff_bridge.simulation import LedgerError
from onoff_bridge.simulation.audio import audio_sha256
from onoff_bridge.simulation.ledger import open_ledger, read_ledger
from onoff_bridge.simulation.traffic import LinkBehaviour, TrafficOptions, plan_traffic


def test_a_written_ledger_reads_back(tmp_path: Path) -> None:
    plan = plan_traffic(
        TrafficOptions(seed=1, rate=5, duration_s=10), datetime(2026, 12, 2, tzinfo=UTC), "http://a"
    )
    first, second, third = plan.deliveries[:3]
    path = tmp_path / "ledger.jsonl"
    with open_ledger(path) as ledger:
        ledger.run(seed=1)
        for link in plan.links:
            ledger.audio(link)
        for delivery in (first, second, third):
            ledger.event(delivery, orjson.dumps(delivery.body))
        ledger.answer(first, 1, 200, None, False, 3.0)
        ledger.answer(second, 1, 503, None, False, 3.0)
        ledger.answer(second, 2, 200, None, True, 3.0)
        for attempt in range(1, 6):
            ledger.answer(third, attempt, None, "timeout", False, 3.0)
        ledger.gave_up(third, 5, "timeout")
    read = read_ledger(path)
    assert read.run["seed"] == 1
    sent = orjson.dumps(first.body)
    event = read.events[first.seq]
    assert event.body_sha256 == hashlib.sha256(sent).hexdigest()
    assert event.content_sha256 == content_sha256(first.body)
    assert event.body == first.body
    assert read.accepted(first.seq)
    assert not read.accepted(second.seq) and read.quarantined(second.seq)
    assert not read.accepted(third.seq) and read.gave_up[third.seq]["attempts"] == 5
    by_url = {entry["url"]: entry for entry in read.audio}
    for link in plan.links:
        entry = by_url[link.url]
        assert entry["expires"] == (link.behaviour is LinkBehaviour.EXPIRED)
        assert entry["sha256"] == audio_sha256(link.path)


def test_a_broken_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"type": "run"}\nnot json\n')
    with pytest.raises(LedgerError, match=r"ledger\.jsonl:2"):
        read_ledger(path)

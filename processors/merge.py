"""How a call's deliveries fold into its current state: a join, so order and repeats don't matter.

Every rule below is commutative, associative and idempotent on the call's
fields, so any permutation of a call's deliveries, with any of them repeated,
ends in the same fields. docs/dedupe.md lists the rules and why each was chosen.

Records are the Avro dicts of `CallEvent` (in) and `Call` (out).

The retention rule lives here too, beside the fold it guards: `decide` is the
whole decision for one delivery, a pure function of (state, delivery, now).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any

import orjson

Record = dict[str, Any]

# Who and when. They rarely differ between deliveries of one call; when they do, a fixed
# preference decides (see _identity), never the arrival order.
IDENTITY_FIELDS = (
    "onoffUserName",
    "onoffUserEmail",
    "onoffUserNumber",
    "externalNumber",
    "externalName",
    "externalEmail",
    "callStarted",
    "callDirection",
)
# Only grow as the call ends and post-call data arrives.
MAXIMUM_FIELDS = ("callEnded", "callDuration", "voicemailDuration")
# The fields that make a call; a delivery that changes none of them makes no new version.
CONTENT_FIELDS = (
    *IDENTITY_FIELDS,
    *MAXIMUM_FIELDS,
    "eventKinds",
    "callStatus",
    "callNotes",
    "callRecordingUrls",
    "voicemailUrls",
    "tags",
    "extraJson",
)
STATUS_RANK = {"ANSWERED": 0, "VOICEMAIL": 1, "MISSED": 2}
MAX_DELIVERY_HASHES = 64


def new_call(call_id: str) -> Record:
    return {
        "id": call_id,
        "version": 0,
        "eventKinds": [],
        **{field: None for field in (*IDENTITY_FIELDS, *MAXIMUM_FIELDS)},
        "callStatus": None,
        "callNotes": None,
        "callRecordingUrls": [],
        "voicemailUrls": [],
        "tags": [],
        "extraJson": None,
        "deliveryCount": 0,
        "firstSeenAt": None,
        "lastUpdatedAt": None,
        "deliveryHashes": [],
    }


def merge(call: Mapping[str, Any], event: Mapping[str, Any]) -> Record:
    """Folds one CallEvent into a Call; the version is left for the caller to set."""
    merged = dict(call)
    for field in IDENTITY_FIELDS:
        merged[field] = _identity(merged[field], event.get(field))
    for field in MAXIMUM_FIELDS:
        merged[field] = _maximum(merged[field], event.get(field))
    merged["callNotes"] = _longest_notes(merged["callNotes"], event.get("callNotes"))
    merged["callStatus"] = _best_status(merged["callStatus"], event.get("callStatus"))
    merged["eventKinds"] = _union(merged["eventKinds"], event.get("eventName"))
    merged["callRecordingUrls"] = _union(merged["callRecordingUrls"], event.get("callRecordingUrl"))
    merged["voicemailUrls"] = _union(merged["voicemailUrls"], event.get("voicemailUrl"))
    merged["tags"] = _merge_tags(merged["tags"], event.get("tags") or [])
    merged["extraJson"] = _merge_extra(merged["extraJson"], event.get("extraJson"))
    return merged


def record_delivery(call: Mapping[str, Any], event: Mapping[str, Any]) -> Record:
    """Adds a delivery's bookkeeping (count, hashes, first/last seen) to a merged call."""
    ingest = event["ingest"]
    received: datetime = ingest["receivedAt"]
    recorded = dict(call)
    recorded["deliveryCount"] = call["deliveryCount"] + 1
    recorded["deliveryHashes"] = [*call["deliveryHashes"], ingest["contentSha256"]][
        -MAX_DELIVERY_HASHES:
    ]
    first, last = call["firstSeenAt"], call["lastUpdatedAt"]
    recorded["firstSeenAt"] = received if first is None else min(first, received)
    recorded["lastUpdatedAt"] = received if last is None else max(last, received)
    return recorded


def content(call: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(call[field] for field in CONTENT_FIELDS)


def _identity(a: Any, b: Any) -> Any:
    """The earliest time; for text the longest (most complete), then the smallest.

    "The first non-null value" by arrival would depend on the order deliveries
    arrive in; "the earliest received" would need each value's origin, which a
    duplicate or no-op delivery could then move without making a new version,
    so the result would again depend on the order (the property test found it).
    """
    if a is None or b is None:
        return a if b is None else b
    if isinstance(a, str) and isinstance(b, str):
        return min(a, b, key=lambda text: (-len(text), text))
    return min(a, b)


def _maximum(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _longest_notes(a: str | None, b: str | None) -> str | None:
    # Notes only grow during the post-call window: the longest wins, then the greatest text.
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda notes: (len(notes), notes))


def _best_status(a: str | None, b: str | None) -> str | None:
    # Answered over voicemail over missed over the rest; within a rank, alphabetical first.
    if a is None or b is None:
        return a if b is None else b
    return min(a, b, key=lambda s: (STATUS_RANK.get(s.upper(), len(STATUS_RANK)), s))


def _union(values: Iterable[str], value: str | None) -> list[str]:
    return sorted({*values, value} - {None}) if value is not None else list(values)


def _tag_key(tag: Mapping[str, Any]) -> str:
    return f"id:{tag['tagId']}" if tag.get("tagId") is not None else f"name:{tag.get('tagName')}"


def _tag_rank(tag: Mapping[str, Any]) -> tuple[str, str]:
    return (tag.get("tagName") or "", tag.get("tagColor") or "")


def _merge_tags(
    tags: Iterable[Mapping[str, Any]], incoming: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    by_key: dict[str, dict[str, Any]] = {}
    for tag in (*tags, *incoming):
        key = _tag_key(tag)
        # Conflicting names or colours for one tagId: the greatest (name, colour) wins.
        if key not in by_key or _tag_rank(tag) > _tag_rank(by_key[key]):
            by_key[key] = {f: tag.get(f) for f in ("tagId", "tagName", "tagColor")}
    return [by_key[key] for key in sorted(by_key)]


def _merge_extra(current: str | None, incoming: str | None) -> str | None:
    if incoming is None:
        return current
    if current is None:
        return incoming
    merged: dict[str, Any] = orjson.loads(current)
    for key, value in orjson.loads(incoming).items():
        if key not in merged or _canonical(value) > _canonical(merged[key]):
            merged[key] = value
    return orjson.dumps(merged, option=orjson.OPT_SORT_KEYS).decode()


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class Outcome(enum.Enum):
    NEW_VERSION = "new_version"
    DUPLICATE = "duplicate"  # the same content was folded in before
    UNCHANGED = "unchanged"  # new content, but it changes none of the call's fields
    BEYOND_RETENTION = "beyond_retention"  # the call is (or would be) past the retention


def fold(current: Mapping[str, Any] | None, event: Mapping[str, Any]) -> tuple[Outcome, Record]:
    """Decides what one delivery does to a call: the call to emit, or why there is none.

    The decision depends only on the call as last emitted and on the delivery,
    so a replay after a crash decides the same, and a re-emitted version is
    identical to the first (times come from the deliveries, never the clock).
    """
    call = new_call(event["id"]) if current is None else current
    if event["ingest"]["contentSha256"] in call["deliveryHashes"]:
        return Outcome.DUPLICATE, dict(call)
    merged = merge(call, event)
    if current is not None and content(merged) == content(current):
        return Outcome.UNCHANGED, dict(call)
    updated = record_delivery(merged, event)
    updated["version"] = call["version"] + 1
    return Outcome.NEW_VERSION, updated


# Retention. A call's age is measured from its callStarted, or, for a call that
# never said when it started, from its lastUpdatedAt (the latest receivedAt
# folded in). A call is past the retention when that time is before `now -
# retention`. One rule decides both things:
#
# - eviction drops the calls past the retention from memory, leaving a marker
#   (`evicted`) so the call is still known to have existed;
# - a delivery is refused when its call is past the retention (or was evicted),
#   or would be once the delivery is folded in.
#
# So eviction only drops calls every later delivery is refused for, and no
# delivery can start a call again at version 1: the marker answers for a call
# whose deliveries lack callStarted, which no rule on the delivery alone could
# tell from a new call.

EVICTED = "evicted"


def evicted(call: Mapping[str, Any]) -> Record:
    """What stays in memory of an evicted call: enough to refuse it, nothing to fold into."""
    return {"id": call["id"], "version": call["version"], EVICTED: True}


def is_evicted(state: Mapping[str, Any] | None) -> bool:
    return state is not None and bool(state.get(EVICTED))


def age_anchor(call: Mapping[str, Any]) -> datetime:
    """The time a call's age is measured from: callStarted, else lastUpdatedAt."""
    started: datetime | None = call.get("callStarted")
    return started if started is not None else call["lastUpdatedAt"]


def past_retention(call: Mapping[str, Any], now: datetime, retention: timedelta) -> bool:
    """Whether eviction may drop `call` (an evicted marker always is)."""
    return is_evicted(call) or age_anchor(call) < now - retention


def anchor_with(current: Mapping[str, Any] | None, event: Mapping[str, Any]) -> datetime:
    """`age_anchor` of the call after `event` is folded in, by the rules `merge` uses."""
    started = _identity(
        None if current is None else current["callStarted"], event.get("callStarted")
    )
    if started is not None:
        return started  # type: ignore[no-any-return]  # _identity returns its inputs' type
    received: datetime = event["ingest"]["receivedAt"]
    last = None if current is None else current["lastUpdatedAt"]
    return received if last is None else max(last, received)


def evict_past_retention(
    calls: MutableMapping[str, Any], now: datetime, retention: timedelta
) -> list[str]:
    """Replaces each call past the retention by its `evicted` marker; returns their ids."""
    doomed = [
        key
        for key, call in calls.items()
        if isinstance(call, dict) and not is_evicted(call) and past_retention(call, now, retention)
    ]
    for key in doomed:
        calls[key] = evicted(calls[key])
    return doomed


def decide(
    state: Mapping[str, Any] | None,
    event: Mapping[str, Any],
    now: datetime,
    retention: timedelta,
) -> tuple[Outcome, Record]:
    """The whole decision for one delivery: refused past the retention, else `fold`.

    `now` is the event clock (see `processors.records.EventClock`), the same
    one eviction uses.
    """
    # The state's own age counts too, so whether the eviction timer has run yet
    # never changes a decision.
    if state is not None and past_retention(state, now, retention):
        return Outcome.BEYOND_RETENTION, dict(state)
    if anchor_with(state, event) < now - retention:
        return Outcome.BEYOND_RETENTION, dict(state or {})
    return fold(state, event)

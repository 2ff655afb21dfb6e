"""Onoff traffic planned from a seed: users, calls and their later deliveries, SMS, activation.

The plan is a pure function of its options (seed, rate, duration, time scale,
the start time and the audio server's address), so the same seed gives the
same deliveries, bodies and links. What a call sends, as Onoff does:

- right after it ends, one `CDR` (or `VM` for a voicemail, with its link);
- for some calls, a post-call update 5 minutes later: the same id again, with
  more notes and tags;
- for some answered calls, a `RECORDING` 5 to 8 minutes later: the call's data
  so far plus `callRecordingUrl`.

`time_scale` compresses those minutes: at 60, five minutes take five seconds.

For soak runs: `heavy_user_calls` gives that many of the planned calls to one
user, all started on the run's UTC day (one day window, many calls), and
`poison_calls` adds two calls dated at the ends of the calendar, one started
9999-12-31 (no metrics window can hold it) and one in the year 1 (past any
dedupe retention); the ingress accepts both, the processors dead-letter them.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

CDR_PATH = "/v1/onoff/cdr"
SMS_PATH = "/v1/onoff/sms"
POST_CALL_DELAY_S = 5 * 60
RECORDING_DELAY_S = (5 * 60, 8 * 60)

# What Onoff might send when the customer clicks Integrate (its shape is not documented).
ACTIVATION_PAYLOAD: dict[str, Any] = {
    "id": "12345",
    "eventName": "CDR",
    "onoffUserName": "John Doe",
    "onoffUserEmail": "john.doe@example.com",
    "onoffUserNumber": "1234567890",
    "externalNumber": "0987654321",
    "callStarted": "2023-05-20T14:30:00Z",
    "callEnded": "2023-05-20T14:32:00Z",
    "callDuration": 300,
    "callDirection": "INBOUND",
    "callStatus": "ANSWERED",
    "extraFieldFromTheFuture": {"nested": True},
}

_FIRST = ["Ada", "Bram", "Chidi", "Dana", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas"]
_LAST = ["Moreau", "Keller", "Okafor", "Ilves", "Yilmaz", "Adeyemi", "Berg", "Laine", "Costa"]
_NOTES = [
    "Asked for the March invoice.",
    "Wants a call back on Monday.",
    "Sent the quote by email.",
    "Interested in the yearly plan.",
    "Complained about the last delivery.",
    "Left a message with the front desk.",
]
_MORE_NOTES = ["Followed up after the call.", "Quote accepted.", "Escalated to billing."]
_TAGS = [
    ("t-0001", "Billing", "#32A8FF"),
    ("t-0002", "Sales", "#4CAF50"),
    ("t-0003", "Support", "#F44336"),
    ("t-0007", "Follow-up", "#F5A623"),
    ("t-0009", "VIP", "#9C27B0"),
]
_SMS = ["Got the invoice, thanks!", "On my way.", "Can we move to 3pm?", "Call me back please."]


class DeliveryKind(enum.StrEnum):
    ACTIVATION = "activation"
    CALL = "call"  # the first delivery of a call: CDR, or VM for a voicemail
    UPDATE = "update"  # the post-call update, 5 minutes later
    RECORDING = "recording"  # the RECORDING delivery, 5 to 8 minutes later
    SMS = "sms"


class LinkBehaviour(enum.StrEnum):
    OK = "ok"
    EXPIRED = "expired"  # 404 or 410 from the first request on
    FLAKY = "flaky"  # 503 once, then the audio


@dataclass(frozen=True)
class AudioLink:
    """One recording or voicemail link, served by the simulator's own audio server."""

    path: str  # on the audio server, without the query
    url: str
    call_id: str
    kind: str  # recording or voicemail, as in the Recording schema
    behaviour: LinkBehaviour


@dataclass(frozen=True)
class Delivery:
    due_s: float  # seconds after the start of the run
    seq: int
    kind: DeliveryKind
    path: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])


@dataclass(frozen=True)
class TrafficOptions:
    seed: int
    rate: float = 10.0  # new calls and SMS per second; later deliveries come on top
    duration_s: float = 60.0
    time_scale: float = 1.0
    expired_share: float = 0.15
    flaky_share: float = 0.15
    sms_share: float = 0.15
    update_share: float = 0.4
    recorded_share: float = 0.5
    heavy_user_calls: int = 0
    poison_calls: bool = False


@dataclass
class TrafficPlan:
    deliveries: list[Delivery] = field(default_factory=list)
    links: list[AudioLink] = field(default_factory=list)


@dataclass(frozen=True)
class _User:
    name: str
    email: str
    numbers: tuple[str, ...]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_traffic(options: TrafficOptions, now: datetime, audio_base: str) -> TrafficPlan:
    """Every delivery of a run, sorted by when it is due, and every audio link they carry."""
    rng = random.Random(options.seed)  # noqa: S311 - reproducible traffic, not secrets
    users = _users(rng, options.seed)
    plan = TrafficPlan()
    drafts: list[tuple[float, DeliveryKind, str, dict[str, Any]]] = [
        (0.0, DeliveryKind.ACTIVATION, CDR_PATH, dict(ACTIVATION_PAYLOAD))
    ]
    count = max(1, round(options.rate * options.duration_s))
    if options.heavy_user_calls > count:
        raise ValueError(f"{options.heavy_user_calls} heavy-user calls, but only {count} planned")
    moments = sorted(rng.uniform(0, options.duration_s) for _ in range(count))
    # Its own generator, so the rest of the plan is the same with or without a heavy user.
    heavy_slots = set(
        random.Random(f"{options.seed}/heavy").sample(range(count), options.heavy_user_calls)  # noqa: S311
    )
    heavy = _User("Heavy User", f"heavy.user.s{options.seed}@sim.example.com", ("+15550000001",))
    for n, due in enumerate(moments):
        if n in heavy_slots:
            ended = _within_day(now + timedelta(seconds=due), now)
            drafts.extend(_call(rng, options, n, heavy, ended, due, audio_base, plan.links))
            continue
        user = rng.choice(users)
        ended = now + timedelta(seconds=due)
        if rng.random() < options.sms_share:
            body = _sms(rng, options.seed, n, user, ended)
            drafts.append((due, DeliveryKind.SMS, SMS_PATH, body))
        else:
            drafts.extend(_call(rng, options, n, user, ended, due, audio_base, plan.links))
    if options.poison_calls:
        drafts.extend(_poison_calls(options, users[0], options.duration_s / 2))
    drafts.sort(key=lambda draft: draft[0])
    plan.deliveries = [
        Delivery(round(due, 3), seq, kind, path, body)
        for seq, (due, kind, path, body) in enumerate(drafts)
    ]
    return plan


def _within_day(moment: datetime, now: datetime) -> datetime:
    """`moment` moved into the UTC day of `now`, with room for a call of up to an hour before it."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return min(max(moment, day + timedelta(hours=1)), day + timedelta(days=1, seconds=-1))


def _poison_calls(
    options: TrafficOptions, user: _User, due: float
) -> list[tuple[float, DeliveryKind, str, dict[str, Any]]]:
    drafts = []
    for name, moment in (("9999", "9999-12-31T23:59:59Z"), ("0001", "0001-01-01T00:00:00Z")):
        body = {
            "id": f"sim{options.seed}-poison-{name}",
            "eventName": "CDR",
            "onoffUserName": user.name,
            "onoffUserEmail": user.email,
            "onoffUserNumber": user.numbers[0],
            "externalNumber": "+15550000002",
            "callStarted": moment,
            "callEnded": moment,
            "callDuration": 0,
            "callDirection": "INBOUND",
            "callStatus": "MISSED",
        }
        drafts.append((due, DeliveryKind.CALL, CDR_PATH, body))
    return drafts


def _users(rng: random.Random, seed: int) -> list[_User]:
    users = []
    for n in range(rng.randint(4, 8)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        numbers = tuple(f"+1555{rng.randrange(10**7):07d}" for _ in range(rng.randint(1, 3)))
        # Some addresses in mixed case: the metrics key is the lowercased e-mail.
        local = f"{first}.{last}" if n % 3 else f"{first.lower()}.{last.lower()}"
        users.append(_User(f"{first} {last}", f"{local}.s{seed}u{n}@sim.example.com", numbers))
    return users


def _party(rng: random.Random, user: _User) -> dict[str, Any]:
    party: dict[str, Any] = {
        "onoffUserName": user.name,
        "onoffUserEmail": user.email,
        "onoffUserNumber": rng.choice(user.numbers),
        "externalNumber": f"+1555{rng.randrange(10**7):07d}",
    }
    if rng.random() < 0.5:  # only contacts carry a name and an e-mail
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        party["externalName"] = f"{first} {last}"
        party["externalEmail"] = f"{first.lower()}.{last.lower()}@contact.example.org"
    return party


def _sms(rng: random.Random, seed: int, n: int, user: _User, sent: datetime) -> dict[str, Any]:
    return {
        "id": f"sim{seed}-s{n:05d}-{rng.getrandbits(32):08x}",
        "eventName": "SMS",
        **_party(rng, user),
        "date": iso(sent),
        "smsDirection": rng.choice(["SENT", "RECEIVED"]),
        "body": rng.choice(_SMS),
    }


def _tags(rng: random.Random, count: int) -> list[dict[str, str]]:
    return [
        {"tagId": tag_id, "tagName": name, "tagColor": color}
        for tag_id, name, color in rng.sample(_TAGS, count)
    ]


def _link(
    rng: random.Random,
    options: TrafficOptions,
    audio_base: str,
    call_id: str,
    kind: str,
    links: list[AudioLink],
) -> str:
    roll = rng.random()
    behaviour = (
        LinkBehaviour.EXPIRED
        if roll < options.expired_share
        else LinkBehaviour.FLAKY
        if roll < options.expired_share + options.flaky_share
        else LinkBehaviour.OK
    )
    extension = "mp3" if kind == "recording" else "wav"
    path = f"/audio/{behaviour.value}/{call_id}/{kind}.{extension}"
    url = f"{audio_base}{path}?sig={rng.getrandbits(64):016x}"
    links.append(AudioLink(path, url, call_id, kind, behaviour))
    return url


def _call(
    rng: random.Random,
    options: TrafficOptions,
    n: int,
    user: _User,
    ended: datetime,
    due: float,
    audio_base: str,
    links: list[AudioLink],
) -> list[tuple[float, DeliveryKind, str, dict[str, Any]]]:
    call_id = f"sim{options.seed}-c{n:05d}-{rng.getrandbits(32):08x}"
    direction = "INBOUND" if rng.random() < 0.6 else "OUTBOUND"
    roll = rng.random()
    if direction == "INBOUND":
        status = "ANSWERED" if roll < 0.55 else "MISSED" if roll < 0.8 else "VOICEMAIL"
    else:
        status = "ANSWERED" if roll < 0.7 else "MISSED" if roll < 0.95 else "BUSY"
    duration = {
        "ANSWERED": rng.randint(5, 900),
        "VOICEMAIL": rng.randint(20, 60),
    }.get(status, rng.randint(3, 30))
    body: dict[str, Any] = {
        "id": call_id,
        "eventName": "VM" if status == "VOICEMAIL" else "CDR",
        **_party(rng, user),
        "callStarted": iso(ended - timedelta(seconds=duration)),
        "callEnded": iso(ended),
        "callDirection": direction,
        "callStatus": status,
    }
    if status != "MISSED" or rng.random() < 0.5:  # absent when not available
        body["callDuration"] = duration
    if rng.random() < 0.3:
        body["callNotes"] = rng.choice(_NOTES)
    body["tags"] = _tags(rng, rng.randint(0, 2)) if rng.random() < 0.6 else None
    if status == "VOICEMAIL":
        body["voicemailUrl"] = _link(rng, options, audio_base, call_id, "voicemail", links)
        body["voicemailDuration"] = rng.randint(5, duration)
    drafts = [(due, DeliveryKind.CALL, CDR_PATH, body)]
    latest = body
    if rng.random() < options.update_share:
        update = dict(body)
        notes = [n for n in (body.get("callNotes"), rng.choice(_MORE_NOTES)) if n]
        update["callNotes"] = " ".join(notes)
        known = {tag["tagId"] for tag in body.get("tags") or []}
        extra = [t for t in _tags(rng, 2) if t["tagId"] not in known][:1]
        update["tags"] = [*(body.get("tags") or []), *extra]
        drafts.append(
            (due + POST_CALL_DELAY_S / options.time_scale, DeliveryKind.UPDATE, CDR_PATH, update)
        )
        latest = update
    if status == "ANSWERED" and duration >= 10 and rng.random() < options.recorded_share:
        recording = dict(latest)
        recording["eventName"] = "RECORDING"
        recording["callRecordingUrl"] = _link(rng, options, audio_base, call_id, "recording", links)
        delay = rng.uniform(*RECORDING_DELAY_S) / options.time_scale
        drafts.append((due + delay, DeliveryKind.RECORDING, CDR_PATH, recording))
    return drafts

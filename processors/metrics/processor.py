"""Metrics: onoff.calls -> onoff.user-call-metrics, each call counted once per window.

Faust writes a table's changelog to the partition of the event being
processed, so all state written while handling a record must belong to that
record's partition. A window gathers calls from every partition of
onoff.calls, so its state cannot live beside the calls. Two agents, each
owning the state of its own partitions:

1. calls agent, on onoff.calls (partition of the call id). Table `metrics-calls`:
   call id -> the version applied and every window the call ever counted in.
   A version becomes one update per such window, sent to an internal
   contributions topic keyed by *user*: the contribution for the windows of
   this version, a retraction for the others, each stamped with the version.
2. windows agent, on the contributions topic (partition of the user). Table
   `metrics-windows` holds, in that partition, each window's tally (running
   sums, two small tops for the maxima, a sequence number) and each call's
   share of each window (version, contribution, the contribution it replaced,
   the window's sequence number then): see `tally.py`. Per call, the highest
   version wins; the sums move from its old contribution to the new one, and a
   UserCallMetrics record is sent when the figures change. A window's records
   stay a few hundred bytes whatever the number of calls it counts.

Why this counts each call once across restarts and rebalances, with
at_least_once delivery: both tables are rebuilt from their changelogs by
whichever worker takes a partition over, and every step is idempotent. An
update is applied only when its version is newer than the call's share, so a
replayed update changes nothing; a version's updates cover the call's whole
footprint, so losing an earlier version's updates is healed by any later one;
a version equal to the one applied sends its updates again, which heals a
crash that saved the call's state but lost some updates. The share is written
before the tally, and both changelog writes of an update go to one partition
in order, so a crash keeps a prefix of them: a share saved without its tally
carries a sequence number ahead of the window's, and the replay of that update
(it was not committed) applies the share's change again from the contribution
it replaced. The other option, partial aggregates per (window, source
partition) combined when read, would spread a window over several workers and
leave no single place to emit its record. Keying the windows by user puts all
of a user's windows in one partition, so the HTTP query is answered by one
worker (faust routes it there).

A record lost in a crash after the tally was saved would not be sent again by
a change, so a repeated update sends the window's current record again:
identical, since it is derived only from the tally.

A call the pure core cannot place (no hour or day window holds its start, or
a talk time no window can sum) is counted as `unplaceable` and dead-lettered
with its partition and offset; the worker goes on.

Expiry runs on event time, the latest lastUpdatedAt seen: a version whose
windows all ended more than the retention before is late (counted, logged,
not applied); a timer drops windows, their shares and calls past the
retention plus a grace, with tombstones in their changelogs. Log lines name a
window by `Window.redacted` (a hash for the user), never by its key.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.types import EventT, StreamT

from processors.codecs import UTF8
from processors.deadletter import DeadLetters
from processors.expiry import expire_entries
from processors.metrics.aggregation import CallState, Decision, Update, plan
from processors.metrics.figures import Figures, metrics_record
from processors.metrics.settings import MetricsSettings
from processors.metrics.tally import (
    Applied,
    Share,
    Tally,
    apply_update,
    from_entries,
    parse_share_key,
    refill,
    share_key,
    share_prefix,
)
from processors.metrics.windows import (
    UnplaceableCallError,
    Window,
    from_millis,
    to_millis,
    updated_millis,
)
from processors.progress import ProgressTracker
from processors.records import decode_with_retry
from schemas import AvroCodec, RecordDecodeError

log = logging.getLogger(__name__)

NAME = "metrics"


class MetricsProcessor:
    def __init__(
        self,
        app: faust.App,
        settings: MetricsSettings,
        calls_topic: str,
        calls_partitions: int,
        metrics_topic: str,
        calls_codec: AvroCodec,
        metrics_codec_name: str,
        deadletters: DeadLetters,
        progress: ProgressTracker,
    ) -> None:
        self.app = app
        self._calls_codec = calls_codec
        self._deadletters = deadletters
        self._progress = progress
        self.retention = timedelta(days=settings.retention_days)
        self._grace = timedelta(hours=settings.expiry_grace_hours)
        # Event time: the latest lastUpdatedAt seen by each agent of this process.
        self.calls_clock_ms = 0
        self.windows_clock_ms = 0
        self.source = app.topic(
            calls_topic, key_serializer="raw", value_serializer="raw", internal=False
        )
        self.contributions = app.topic(
            f"{app.conf.id}-metrics-contributions",
            key_serializer=UTF8,
            value_serializer="json",
            partitions=settings.partitions,
            internal=True,
        )
        self.output = app.topic(
            metrics_topic, key_serializer=UTF8, value_serializer=metrics_codec_name
        )
        self.calls = _table(app, "metrics-calls", calls_partitions)
        self.windows = _table(app, "metrics-windows", settings.partitions)
        app.agent(self.source, name=f"{NAME}-calls-agent")(self._run_calls)
        app.agent(self.contributions, name=f"{NAME}-windows-agent")(self._run_windows)

    async def _run_calls(self, stream: StreamT[Any]) -> None:
        async for event in stream.events():
            await self.handle_call(event)

    async def _run_windows(self, stream: StreamT[Any]) -> None:
        async for event in stream.events():
            await self.handle_update(event)

    async def handle_call(self, event: EventT[Any]) -> str:
        message = event.message
        if message.value is None:  # a tombstone on onoff.calls: nothing to count
            return self._processed("tombstone", message)
        try:
            call = await decode_with_retry(self._calls_codec, message.value)
        except RecordDecodeError as exc:
            await self._reject(message, str(exc))
            return "deadlettered"
        stored = self.calls.get(call["id"])
        state = CallState.from_json(stored) if stored is not None else None
        try:
            updated_ms = updated_millis(call)
            self.calls_clock_ms = max(self.calls_clock_ms, updated_ms)
            horizon = from_millis(self.calls_clock_ms) - self.retention
            decision, new_state, updates = plan(state, call, horizon)
        except UnplaceableCallError as exc:
            await self._reject(message, str(exc), "unplaceable")
            return "unplaceable"
        if decision is Decision.LATE:
            log.warning(
                "call version %s of %s is past the metrics retention; not counted",
                call["version"],
                call["id"],
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "key": call["id"],
                },
            )
            return self._processed("late", message)
        for update in updates:
            await self.contributions.send(
                key=Window.parse(update.window).user,
                value={"w": update.window, **update.to_json(), "t": self.calls_clock_ms},
            )
        if new_state is not None and (decision is Decision.NEW_VERSION or new_state != state):
            # The partition is kept so the expiry timer can write the tombstone there.
            self.calls[call["id"]] = {
                **new_state.to_json(),
                "p": message.partition,
                "u": updated_ms,
            }
        return self._processed(decision.value, message)

    async def handle_update(self, event: EventT[Any]) -> str:
        message = event.message
        value = cast(dict[str, Any], event.value)
        update = Update.from_json(value["w"], value)
        window = Window.parse(update.window)
        self.windows_clock_ms = max(self.windows_clock_ms, int(value["t"]))
        if window.end < from_millis(int(value["t"])) - self.retention:
            log.warning(
                "update of window %s is past the metrics retention; not applied",
                window.redacted,
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                },
            )
            return self._processed("late", message)
        stored = self._tally(update.window, message.partition)
        before = stored.figures() if stored is not None else Figures()
        key = share_key(update.window, update.call_id)
        stored_share = self.windows.get(key)
        step = apply_update(
            stored,
            Share.from_json(stored_share) if stored_share is not None else None,
            update.version,
            update.updated_ms,
            update.contribution,
        )
        # The share first: a crash before the tally is written is repaired from it.
        if step.share is not None:
            self.windows[key] = {"p": message.partition, **step.share.to_json()}
        tally = step.tally
        if tally.exhausted:
            tally = refill(tally, self._shares(update.window))
        if step.tally_changed:
            self.windows[update.window] = {"p": message.partition, **tally.to_json()}
            after = tally.figures()
            if _differ(before, after):
                await self._emit(window, after)
        elif step.applied is Applied.REPEAT and stored is not None:
            await self._emit(window, before)
        return self._processed(f"window_{step.applied.value}", message)

    def _tally(self, window_key: str, partition: int | None = None) -> Tally | None:
        stored = self.windows.get(window_key)
        if stored is None:
            return None
        if "calls" in stored and partition is not None:
            # A window written before tallies held every call's entry: split it up once.
            tally, shares = from_entries(stored["calls"])
            for call_id, share in shares.items():
                self.windows[share_key(window_key, call_id)] = {"p": partition, **share.to_json()}
            self.windows[window_key] = {"p": partition, **tally.to_json()}
            return tally
        if "calls" in stored:
            return from_entries(stored["calls"])[0]
        return Tally.from_json(stored)

    def _shares(self, window_key: str) -> list[Share]:
        """Every share of a window, by a scan of this worker's windows table.

        Only needed when retractions emptied a top (see tally.py), so rarely.
        """
        prefix = share_prefix(window_key)
        return [
            Share.from_json(value)
            for key, value in list(self.windows.data.items())
            if isinstance(key, str) and key.startswith(prefix)
        ]

    async def _emit(self, window: Window, figures: Figures) -> None:
        await self.output.send(key=window.key, value=metrics_record(window, figures))

    def current(self, window: Window) -> Figures | None:
        """The figures of a window held by this worker, None when it counts no call."""
        tally = self._tally(window.key)
        if tally is None:
            return None
        figures = tally.figures()
        return figures if figures.calls_total else None

    def expire(self) -> tuple[int, int]:
        """Drops windows (with their shares) and calls past the retention plus grace;
        returns how many windows and shares together, and how many calls."""
        windows_horizon = from_millis(self.windows_clock_ms) - self.retention - self._grace
        calls_horizon_ms = to_millis(
            from_millis(self.calls_clock_ms) - self.retention - self._grace
        )

        def window_expired(key: str, _value: Any) -> bool:
            share = parse_share_key(key)
            try:
                return Window.parse(share[0] if share else key).end < windows_horizon
            except ValueError:  # not a key of ours
                return False

        windows = self._expire(self.windows, window_expired)
        calls = self._expire(
            self.calls,
            lambda _key, value: (
                max([value["u"], *(to_millis(Window.parse(k).end) for k in value["w"])])
                < calls_horizon_ms
            ),
        )
        return windows, calls

    def _expire(self, table: Table[str, dict[str, Any]], expired: Any) -> int:
        if self.windows_clock_ms == 0 and self.calls_clock_ms == 0:
            return 0
        return expire_entries(self.app, table, expired)

    def _processed(self, outcome: str, message: Any) -> str:
        self._progress.processed(NAME, outcome, message.topic, message.partition, message.offset)
        return outcome

    async def _reject(self, message: Any, reason: str, outcome: str = "deadlettered") -> None:
        await self._deadletters.reject(NAME, message, reason)
        self._processed(outcome, message)


def _table(app: faust.App, name: str, partitions: int) -> Table[str, dict[str, Any]]:
    # The changelog topic is declared here because faust builds the default one with
    # the serializers it derives, and recovery then reads it with those.
    changelog = app.topic(
        f"{app.conf.id}-{name}-changelog",
        key_serializer=UTF8,
        value_serializer="json",
        partitions=partitions,
        compacting=True,
        internal=True,
    )
    table = cast(
        Table[str, dict[str, Any]],
        app.Table(name, partitions=partitions, changelog_topic=changelog),
    )
    # Faust derives these from key_type/value_type; changelog writes use them.
    table.key_serializer = UTF8
    table.value_serializer = "json"
    return table


def _differ(before: Figures, after: Figures) -> bool:
    # A window that counted nothing and still counts nothing has no record to change.
    if before.calls_total == 0 and after.calls_total == 0:
        return False
    return before != after

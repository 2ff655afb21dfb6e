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
   `metrics-windows`: window key -> {call id: [version, lastUpdatedAt, contribution]}.
   Per call, the highest version wins; the figures are derived from the
   entries and a UserCallMetrics record is sent when they change.

Why this counts each call once across restarts and rebalances, with
at_least_once delivery: both tables are rebuilt from their changelogs by
whichever worker takes a partition over, and every step is idempotent. An
update replaces the call's entry instead of adding to a sum, so a replayed
update changes nothing; a version's updates cover the call's whole footprint,
so losing an earlier version's updates is healed by any later one; a version
equal to the one applied sends its updates again, which heals a crash that
saved the call's state but lost some updates. The other option, partial
aggregates per (window, source partition) combined when read, would spread a
window over several workers and leave no single place to emit its record.
Keying the windows by user puts all of a user's windows in one partition, so
the HTTP query is answered by one worker (faust routes it there).

A record lost in a crash after the window state was saved would not be sent
again by a change, so a repeated update sends the window's current record
again: identical, since it is derived only from the entries.

Expiry runs on event time, the latest lastUpdatedAt seen: a version whose
windows all ended more than the retention before is late (counted, logged,
not applied); a timer drops windows and calls past the retention plus a
grace, with tombstones in their changelogs.
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
from processors.dedupe import decode_with_retry
from processors.expiry import expire_entries
from processors.metrics.aggregation import (
    Applied,
    CallState,
    Decision,
    Figures,
    Update,
    apply_update,
    figures_of,
    metrics_record,
    plan,
)
from processors.metrics.settings import MetricsSettings
from processors.metrics.windows import Window, from_millis, to_millis, windows_of
from processors.progress import ProgressTracker
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
        updated_ms = to_millis(call["lastUpdatedAt"])
        self.calls_clock_ms = max(self.calls_clock_ms, updated_ms)
        horizon = from_millis(self.calls_clock_ms) - self.retention
        windows = windows_of(call)
        if windows and all(w.end < horizon for w in windows):
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
        stored = self.calls.get(call["id"])
        state = CallState.from_json(stored) if stored is not None else None
        decision, new_state, updates = plan(state, call, horizon)
        for update in updates:
            await self.contributions.send(
                key=Window.parse(update.window).user,
                value={"w": update.window, **update.to_json(), "t": self.calls_clock_ms},
            )
        if decision is Decision.NEW_VERSION or new_state != state:
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
                update.window,
                extra={"topic": message.topic, "partition": message.partition},
            )
            return self._processed("late", message)
        stored = self.windows.get(update.window)
        entries: dict[str, Any] = dict(stored["calls"]) if stored is not None else {}
        before = figures_of(entries.values())
        applied = apply_update(entries, update)
        if applied is Applied.CHANGED:
            self.windows[update.window] = {"p": message.partition, "calls": entries}
            after = figures_of(entries.values())
            if _differ(before, after):
                await self._emit(window, after)
        elif applied is Applied.REPEAT and stored is not None:
            await self._emit(window, before)
        return self._processed(f"window_{applied.value}", message)

    async def _emit(self, window: Window, figures: Figures) -> None:
        await self.output.send(key=window.key, value=metrics_record(window, figures))

    def current(self, window: Window) -> Figures | None:
        """The figures of a window held by this worker, None when it counts no call."""
        stored = self.windows.get(window.key)
        if stored is None:
            return None
        figures = figures_of(stored["calls"].values())
        return figures if figures.calls_total else None

    def expire(self) -> tuple[int, int]:
        """Drops windows and calls past the retention plus grace; returns how many of each."""
        windows_horizon = from_millis(self.windows_clock_ms) - self.retention - self._grace
        calls_horizon_ms = to_millis(
            from_millis(self.calls_clock_ms) - self.retention - self._grace
        )
        windows = self._expire(
            self.windows, lambda key, _value: Window.parse(key).end < windows_horizon
        )
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

    async def _reject(self, message: Any, reason: str) -> None:
        await self._deadletters.reject(NAME, message, reason)
        self._processed("deadlettered", message)


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

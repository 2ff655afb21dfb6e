"""GET /users/{user}/metrics?granularity=day&from=…&to=…: a user's current figures as JSON.

Served by the metrics workers' web server. All windows of a user live in one
partition of the windows table (it is keyed by user), so faust's router
forwards the request to the worker that owns it and that worker answers alone.
`from` and `to` are ISO-8601 dates or times (UTC when no offset is given); the
answer lists every window whose start lies between the window of `from` and
`to` and that counts at least one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from processors.metrics.figures import Figures, metrics_record
from processors.metrics.processor import MetricsProcessor
from processors.metrics.windows import Granularity, Window, window_range

PATH = "/users/{user}/metrics"
METADATA_TIMEOUT_S = 5.0

View = Callable[..., Awaitable[Any]]


class QueryError(ValueError):
    """A query parameter that cannot be understood; answered with 400."""


def parse_moment(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError as exc:
        raise QueryError(f"{name}: not an ISO-8601 date or time: {text!r}") from exc
    except OverflowError as exc:  # e.g. year 1 at +01:00 has no UTC equivalent
        raise QueryError(f"{name}: out of the calendar's range: {text!r}") from exc


def window_json(window: Window, figures: Figures) -> dict[str, Any]:
    """The window's UserCallMetrics record as JSON, without the user and granularity asked for."""
    record = metrics_record(window, figures)
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in record.items()
        if key not in ("userKey", "granularity")
    }


async def _learn_partitions(processor: MetricsProcessor) -> None:
    # Faust's router finds a user's partition in the producer's metadata, which knows
    # the windows changelog only once something was sent to it: until then, routing
    # failed with a TypeError (a 500 on a worker that had not counted anything yet).
    topic = processor.windows.changelog_topic.get_topic_name()
    transport_producer: Any = processor.app.producer  # faust's aiokafka driver
    async with asyncio.timeout(METADATA_TIMEOUT_S):
        await transport_producer._ensure_producer().partitions_for(topic)


def _earlier(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _windows(
    user: str, granularity: Granularity, first: datetime, last: datetime, most: int
) -> list[Window]:
    """The windows asked for; QueryError past `most` of them or past the calendar's end."""
    windows: list[Window] = []
    try:
        for window in window_range(user, granularity, first, last):
            if len(windows) == most:
                raise QueryError(f"more than {most} windows asked for")
            window.end  # noqa: B018  # its record must be computable
            windows.append(window)
    except OverflowError as exc:
        raise QueryError("the range reaches past the calendar's end") from exc
    return windows


def metrics_view(processor: MetricsProcessor, max_windows: int) -> View:
    async def user_metrics(web: Any, request: Any, user: str) -> Any:
        user = user.lower()
        query = request.query
        try:
            granularity = Granularity(query.get("granularity", "day"))
        except ValueError:
            return web.json({"error": "granularity must be hour or day"}, status=400)
        try:
            last = parse_moment(query["to"], "to") if "to" in query else datetime.now(UTC)
            first = (
                parse_moment(query["from"], "from")
                if "from" in query
                else _earlier(last, processor.retention)
            )
            windows = _windows(user, granularity, first, last, max_windows)
        except QueryError as exc:
            return web.json({"error": str(exc)}, status=400)
        try:
            await _learn_partitions(processor)
            return await processor.app.router.route_req(processor.windows.name, user, web, request)
        except SameNode:
            pass  # this worker holds the user's windows
        except (ServiceUnavailable, TimeoutError):
            return web.json({"error": "partitions are being reassigned; retry"}, status=503)
        found = [(w, f) for w in windows if (f := processor.current(w)) is not None]
        return web.json(
            {
                "user": user,
                "granularity": granularity.value,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "windows": [window_json(w, f) for w, f in found],
            }
        )

    return user_metrics

"""Drops table entries past a retention, with a tombstone in the table's changelog.

Faust writes a table's changelog to the partition of the event being handled,
and a timer has no event: each entry keeps the partition it was written in
("p"), and only the partitions this worker actively owns are expired here, so
two workers never tombstone each other's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.tables.table import Table
from faust.types import TP


def expire_entries(
    app: faust.App,
    table: Table[str, Any],
    expired: Callable[[str, dict[str, Any]], bool],
    decode: Callable[[Any], Any] | None = None,
    by_key: Callable[[str], bool] | None = None,
) -> int:
    """Removes the entries `expired` picks; returns how many.

    `decode` makes a stored value the dict `expired` reads, for a table that keeps its
    values encoded; a value it cannot read is not one of ours and stays. `by_key`, when
    the key alone can tell, picks the candidates first, so that the others' values are
    not decoded at all.
    """
    actives = app.assignor.assigned_actives()
    changelog = table.changelog_topic.get_topic_name()
    doomed = []
    for key, stored in list(table.data.items()):
        if by_key is not None and not by_key(key):
            continue
        try:
            value = stored if decode is None else decode(stored)
        except ValueError:
            continue
        if (
            isinstance(value, dict)
            and "p" in value
            and TP(changelog, value["p"]) in actives
            and expired(key, value)
        ):
            doomed.append((key, value["p"]))
    for key, partition in doomed:
        table.data.pop(key, None)
        # "raw", as Faust's own deletes do: the json codec would write the text "null",
        # which compaction keeps and recovery brings back as a None entry.
        table.send_changelog(partition, key, None, value_serializer="raw")
    return len(doomed)

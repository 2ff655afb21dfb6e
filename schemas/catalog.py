"""Which schema belongs to which topic, and the checked-in .avsc files themselves."""

from __future__ import annotations

import enum
from functools import cache
from importlib import resources

from schemas.settings import TopicNames


class SchemaName(enum.StrEnum):
    CALL_EVENT = "call_event"
    SMS_EVENT = "sms_event"
    REJECTED_DELIVERY = "rejected_delivery"
    CALL = "call"
    RECORDING = "recording"
    USER_CALL_METRICS = "user_call_metrics"


@cache
def load_schema(name: SchemaName) -> str:
    return resources.files("schemas").joinpath("avro", f"{name.value}.avsc").read_text()


def subjects_for(topics: TopicNames) -> dict[str, SchemaName]:
    """Registry subject (TopicNameStrategy: `<topic>-value`) to the schema it holds."""
    return {
        f"{topics.cdr_raw}-value": SchemaName.CALL_EVENT,
        f"{topics.sms_raw}-value": SchemaName.SMS_EVENT,
        f"{topics.deadletter}-value": SchemaName.REJECTED_DELIVERY,
        f"{topics.calls}-value": SchemaName.CALL,
        f"{topics.recordings}-value": SchemaName.RECORDING,
        f"{topics.user_call_metrics}-value": SchemaName.USER_CALL_METRICS,
    }

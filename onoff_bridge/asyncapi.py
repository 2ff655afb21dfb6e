"""The AsyncAPI 3 document of the topics, generated from the code that defines them.

Channel addresses, partitions, cleanup policies and retention come from
`design_topics` (what `topics apply` makes, with the default settings), the
message payloads from the checked-in `.avsc` files, so the document cannot
drift from what the services use: `onoff-bridge schemas asyncapi` writes it to
`schemas/asyncapi.yaml`, and a test fails when the checked-in file differs.
Only the topics of the design are described; Faust's own topics (changelogs,
the leader topic) are the processors' internal state, not for subscribers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import yaml

from schemas.catalog import SchemaName, load_schema
from schemas.settings import BridgeSettings, TopicNames
from schemas.topics import TopicSpec, design_topics

BINDING_VERSION = "0.5.0"
AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"


@dataclass(frozen=True)
class Channel:
    id: str
    message: str
    schema: SchemaName
    key: str
    written_by: str
    summary: str


def _channels(topics: TopicNames) -> dict[str, Channel]:
    """Topic name to what it carries; the order is the pipeline's."""
    return {
        topics.cdr_raw: Channel(
            "cdrRaw",
            "CallEvent",
            SchemaName.CALL_EVENT,
            "the call `id`",
            "ingress",
            "Every accepted call delivery (CDR, voicemail, recording) as received, with ingest "
            "metadata. A delivery Onoff retried may appear more than once; dedupe drops repeats.",
        ),
        topics.sms_raw: Channel(
            "smsRaw",
            "SmsEvent",
            SchemaName.SMS_EVENT,
            "the SMS `id`",
            "ingress",
            "Every accepted SMS delivery as received, with ingest metadata.",
        ),
        topics.deadletter: Channel(
            "deadletter",
            "RejectedDelivery",
            SchemaName.REJECTED_DELIVERY,
            "the request id, or `<topic>/<partition>/<offset>` for a processor's rejection",
            "ingress, dedupe, recordings, metrics",
            "Deliveries and records that could not be used, with the raw bytes and the reason "
            "(which may quote personal data: restrict who reads it).",
        ),
        topics.calls: Channel(
            "calls",
            "Call",
            SchemaName.CALL,
            "the call `id`",
            "dedupe",
            "The current state of each call: versions 1..n without gaps, a new version only "
            "when a delivery adds or changes data. Compacted: the last record per key is the "
            "call now. A repeated version is identical to its first copy.",
        ),
        topics.recordings: Channel(
            "recordings",
            "Recording",
            SchemaName.RECORDING,
            "`<call id>/<kind>/<link digest>`: one record per recording link of a call",
            "recordings",
            "Where each recording or voicemail of a call was stored, or why it was not "
            "(expired, rejected, failed). Compacted.",
        ),
        topics.user_call_metrics: Channel(
            "userCallMetrics",
            "UserCallMetrics",
            SchemaName.USER_CALL_METRICS,
            "`<user>/<granularity>/<window start>`",
            "metrics",
            "Per-user call figures per hour and per day (UTC), each call counted once in the "
            "window of its `callStarted`; a new version of a call retracts its old figures. "
            "Compacted: the last record per key is the window now.",
        ),
    }


def _bindings(spec: TopicSpec) -> dict[str, Any]:
    configuration: dict[str, Any] = {"cleanup.policy": spec.cleanup_policy.split(",")}
    if "retention.ms" in spec.config:
        configuration["retention.ms"] = int(spec.config["retention.ms"])
    return {
        "kafka": {
            "topic": spec.name,
            "partitions": spec.partitions,
            "topicConfiguration": configuration,
            "bindingVersion": BINDING_VERSION,
        }
    }


def document(settings: BridgeSettings | None = None) -> dict[str, Any]:
    settings = settings or BridgeSettings.model_construct()
    channels = _channels(settings.topics)
    specs = {spec.name: spec for spec in design_topics(settings)}
    out_channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, channel in channels.items():
        out_channels[channel.id] = {
            "address": name,
            "description": channel.summary,
            "messages": {channel.message: {"$ref": f"#/components/messages/{channel.message}"}},
            "bindings": _bindings(specs[name]),
        }
        messages[channel.message] = {
            "name": channel.message,
            "title": channel.message,
            "summary": f"Key: {channel.key}. Written by {channel.written_by}.",
            "contentType": "application/vnd.apache.avro+binary",
            "payload": {
                "schemaFormat": AVRO_FORMAT,
                "schema": json.loads(load_schema(channel.schema)),
            },
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": channel.key},
                    "schemaIdLocation": "payload",
                    "schemaIdPayloadEncoding": "confluent",
                    "bindingVersion": BINDING_VERSION,
                }
            },
        }
        operations[f"subscribe{channel.message}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel.id}"},
            "summary": f"Read {name} (written by {channel.written_by}).",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "onoff-kafka-bridge topics",
            "version": version("onoff-kafka-bridge"),
            "description": (
                "The Kafka topics onoff-kafka-bridge writes, for the data platforms that read "
                "them. Values are Avro in the Confluent wire format (magic byte, 4-byte schema "
                "id); subjects are `<topic>-value`, BACKWARD compatible. Every topic name is a "
                "default and can be changed (ONOFF_BRIDGE_TOPICS__*). Generated by "
                "`onoff-bridge schemas asyncapi`; do not edit by hand."
            ),
        },
        "defaultContentType": "application/vnd.apache.avro+binary",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack of `make run` (plaintext, loopback).",
            },
            "production": {
                "host": "{bootstrap}",
                "protocol": "kafka-secure",
                "description": "Your cluster: TLS and SASL/SCRAM, replication factor 3.",
                "variables": {"bootstrap": {"description": "host:port of a broker"}},
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            },
        },
        "channels": out_channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "securitySchemes": {
                "scram": {"type": "scramSha512", "description": "SASL/SCRAM-SHA-512 over TLS."}
            },
        },
    }


def render(settings: BridgeSettings | None = None) -> str:
    return yaml.safe_dump(document(settings), sort_keys=False, allow_unicode=True, width=100)

"""Read `onoff.calls` with the Schema Registry and print one line per call version.

A data engineer's starting point: only confluent-kafka is needed
(`pip install 'confluent-kafka[avro,schemaregistry]'`), nothing from this
project. The line holds no personal data (no numbers, names, e-mails or
notes): the call id, its version, direction, status, start and duration.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \
    SCHEMA_REGISTRY_URL=http://127.0.0.1:8081/apis/ccompat/v7 \
    python examples/consume_calls.py --from-beginning

For a secured cluster, pass librdkafka settings as KAFKA_<NAME> variables, e.g.
KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=... KAFKA_SASL_PASSWORD=... KAFKA_SSL_CA_LOCATION=ca.pem,
and SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=user:password for the registry.

`onoff.calls` is compacted and keyed by call id: the last version of a key is
the call now, so a table built from it (upsert by `id`, keep the highest
`version`) is the current state of every call.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def kafka_config(group: str, from_beginning: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "group.id": group,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": True,
    }
    for name, value in os.environ.items():
        if name.startswith("KAFKA_") and name != "KAFKA_BOOTSTRAP_SERVERS":
            config[name.removeprefix("KAFKA_").lower().replace("_", ".")] = value
    return config


def registry() -> SchemaRegistryClient:
    config = {"url": os.environ.get("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081")}
    if "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in os.environ:
        config["basic.auth.user.info"] = os.environ["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"]
    return SchemaRegistryClient(config)


def line(call: dict[str, Any]) -> str:
    duration = call.get("callDuration")
    return " ".join(
        [
            call["id"],
            f"v{call['version']}",
            str(call.get("callDirection") or "-"),
            str(call.get("callStatus") or "-"),
            str(call.get("callStarted") or "-"),
            f"{duration}s" if duration is not None else "-",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default=os.environ.get("CALLS_TOPIC", "onoff.calls"))
    parser.add_argument("--group", default=f"consume-calls-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max-records", type=int, default=0, help="stop after N (0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0, help="stop after N s of silence")
    options = parser.parse_args()

    deserialize = AvroDeserializer(registry())
    consumer = Consumer(kafka_config(options.group, options.from_beginning))
    consumer.subscribe([options.topic])
    seen, idle = 0, 0.0
    try:
        while not options.max_records or seen < options.max_records:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1.0
                if options.idle_timeout and idle >= options.idle_timeout:
                    break
                continue
            idle = 0.0
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                print(f"error: {message.error()}", file=sys.stderr)
                return 1
            context = SerializationContext(message.topic(), MessageField.VALUE)
            call = deserialize(message.value(), context)
            if call is None:  # a tombstone
                continue
            print(line(call), flush=True)
            seen += 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

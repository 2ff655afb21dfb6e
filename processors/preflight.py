"""Before a worker starts: Kafka and the registry accept its credentials, its topics are right.

A worker never creates a topic (the app is built with
`topic_allow_declare=False`). If a topic it reads, writes or keeps a table in
is missing, has the wrong cleanup policy, or disagrees in partitions with the
topics it is co-partitioned with, the worker refuses to start with one line
naming the topic, the problem and the command that fixes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import faust

from processors.settings import ProcessorSettings
from processors.topology import processor_topics
from schemas.connection import KafkaConnection
from schemas.errors import TopicLayoutError
from schemas.preflight import check_kafka, check_registry
from schemas.topics import describe_topics, layout_problems

FIX = "run `onoff-bridge topics apply` with the same ONOFF_BRIDGE_* settings"


def check_worker(settings: ProcessorSettings, names: Sequence[str]) -> None:
    """Raises a `SchemaError` subclass with a one-line message when the worker must not start."""
    config = settings.kafka_config()
    check_kafka(config, settings.connect_timeout_s)
    check_registry(settings.registry_connection(), settings.connect_timeout_s)
    specs = processor_topics(settings, names)
    problems = layout_problems(specs, describe_topics(config, [s.name for s in specs]))
    if problems:
        raise TopicLayoutError("; ".join(problems) + f" — {FIX}")


def broker_credentials(connection: KafkaConnection) -> faust.types.auth.CredentialsT | None:
    """Faust's (aiokafka's) form of the connection: SASL with TLS, or TLS alone."""
    context: ssl.SSLContext | None = connection.ssl_context()
    if connection.uses_sasl:
        assert connection.sasl_username is not None and connection.sasl_password is not None
        return faust.SASLCredentials(
            username=connection.sasl_username,
            password=connection.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=connection.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None

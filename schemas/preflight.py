"""Start-up checks: can this process reach Kafka and the registry with its credentials?

Every process runs them before it starts serving, so a wrong password, a
missing CA or an unreachable cluster is one line within seconds instead of a
client library retrying in silence (librdkafka and aiokafka both reconnect
forever). The messages name the address, the user and the setting to fix;
never a secret.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import httpx
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from schemas.connection import RegistryConnection
from schemas.errors import (
    KafkaAuthenticationError,
    KafkaUnavailableError,
    RegistryAuthenticationError,
    RegistryUnavailableError,
)

# librdkafka logs each failed attempt itself; the one line raised here says it all.
_QUIET = logging.getLogger("schemas.preflight.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# librdkafka's codes for a refused login or a failed TLS handshake.
_AUTH_CODES = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}


def check_kafka(config: Mapping[str, str], timeout_s: float) -> int:
    """Asks the cluster for its metadata; returns the number of brokers it reports.

    Raises `KafkaAuthenticationError` as soon as a broker refuses the login, and
    `KafkaUnavailableError` when none answered within `timeout_s`.
    """
    errors: list[KafkaError] = []
    client_config: dict[str, Any] = {**config, "error_cb": errors.append, "logger": _QUIET}
    admin = AdminClient(client_config)
    where = config.get("bootstrap.servers", "?")
    protocol = config.get("security.protocol", "PLAINTEXT")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            errors.append(exc.args[0])
        else:
            if metadata.brokers:
                return len(metadata.brokers)
        admin.poll(0)  # serves error_cb
        refused = [e for e in errors if e.code() in _AUTH_CODES]
        if refused:
            user = config.get("sasl.username")
            who = f" as {user!r} ({config.get('sasl.mechanisms')})" if user else ""
            raise KafkaAuthenticationError(
                f"Kafka at {where} refused the connection{who} over {protocol}: "
                f"{refused[-1].str()} — check ONOFF_BRIDGE_KAFKA__SASL_USERNAME, "
                "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD and ONOFF_BRIDGE_KAFKA__SSL_CA_LOCATION"
            )
        if time.monotonic() >= deadline:
            last = f": {errors[-1].str()}" if errors else ""
            raise KafkaUnavailableError(
                f"no Kafka broker at {where} answered over {protocol} within {timeout_s:.0f}s"
                f"{last} — check ONOFF_BRIDGE_KAFKA_BOOTSTRAP_SERVERS and "
                "ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL"
            )


def check_registry(connection: RegistryConnection, timeout_s: float) -> None:
    """Lists the registry's subjects with the connection's credentials."""
    verify: ssl.SSLContext | bool = True
    if connection.ca_location is not None:
        verify = ssl.create_default_context(cafile=str(connection.ca_location))
    url = connection.url.rstrip("/") + "/subjects"
    try:
        response = httpx.get(url, auth=connection.httpx_auth(), verify=verify, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise RegistryUnavailableError(
            f"the schema registry at {connection.url} did not answer: {exc}"
            " — check ONOFF_BRIDGE_SCHEMA_REGISTRY_URL and ONOFF_BRIDGE_SCHEMA_REGISTRY_CA_LOCATION"
        ) from exc
    if response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        who = f"user {connection.basic_auth_user!r}" if connection.basic_auth_user else "no user"
        raise RegistryAuthenticationError(
            f"the schema registry at {connection.url} refused {who} "
            f"(HTTP {response.status_code}) — check ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER"
            " and ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD"
        )
    if response.status_code != HTTPStatus.OK:
        raise RegistryUnavailableError(
            f"the schema registry at {connection.url} answered HTTP {response.status_code}"
        )

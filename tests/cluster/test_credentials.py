"""Every client with a wrong password, or none: one clear line at start-up, within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onoff_bridge.localstack.secure import SecureEndpoints
from tests.cluster.helpers import Layout, cli, client_env

KAFKA_VARS = (
    "ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL",
    "ONOFF_BRIDGE_KAFKA__SASL_MECHANISM",
    "ONOFF_BRIDGE_KAFKA__SASL_USERNAME",
    "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD",
    "ONOFF_BRIDGE_KAFKA__SSL_CA_LOCATION",
)
REGISTRY_VARS = (
    "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_USER",
    "ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD",
)
# What each client is started as; all of them talk to Kafka, and all but `topics
# apply` to the registry.
KAFKA_CLIENTS = {
    "ingress": ["ingress", "--port", "0"],
    "worker": ["worker", "dedupe"],
    "topics": ["topics", "apply"],
}
REGISTRY_CLIENTS = {
    "ingress": ["ingress", "--port", "0"],
    "worker": ["worker", "metrics"],
    "schemas": ["schemas", "register"],
}
WRONG = "not-the-password"


@pytest.fixture
def env(cluster: SecureEndpoints, layout: Layout, tmp_path: Path) -> dict[str, str]:
    good = client_env(cluster, layout, tmp_path, ONOFF_BRIDGE_CONNECT_TIMEOUT_S="5")
    # The workers must get past the topic check to reach the registry check, which
    # comes after Kafka's: their topics exist.
    assert cli("topics", "apply", env=good).returncode == 0
    return good


def run(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    began = time.monotonic()
    result = cli(*args, env=env, timeout_s=60)
    return result.returncode, result.stderr, time.monotonic() - began


@pytest.mark.parametrize("client", sorted(KAFKA_CLIENTS))
def test_a_wrong_kafka_password_is_refused_at_start_up(
    client: str, env: dict[str, str], cluster: SecureEndpoints
) -> None:
    code, said, took = run(
        KAFKA_CLIENTS[client], env | {"ONOFF_BRIDGE_KAFKA__SASL_PASSWORD": WRONG}
    )
    assert code == 1, said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said
    assert "refused the connection as 'onoff-bridge' (SCRAM-SHA-512)" in errors[0]
    assert "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD" in errors[0]
    assert WRONG not in said and cluster.password.get_secret_value() not in said
    assert took < 20, f"{client} took {took:.0f}s to give up"


@pytest.mark.parametrize("client", sorted(KAFKA_CLIENTS))
def test_no_kafka_credentials_is_a_clear_error(
    client: str, env: dict[str, str], cluster: SecureEndpoints
) -> None:
    plain = {k: v for k, v in env.items() if k not in KAFKA_VARS}
    code, said, took = run(KAFKA_CLIENTS[client], plain)
    assert code == 1, said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said
    first_broker = cluster.kafka_bootstrap_servers.split(",")[0]
    assert f"no Kafka broker at {first_broker}" in errors[0]
    assert "over PLAINTEXT within 5s" in errors[0]
    assert "ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL" in errors[0]
    assert took < 20, f"{client} took {took:.0f}s to give up"


def test_sasl_without_a_password_is_refused_before_connecting(env: dict[str, str]) -> None:
    unset = {k: v for k, v in env.items() if k != "ONOFF_BRIDGE_KAFKA__SASL_PASSWORD"}
    code, said, _ = run(KAFKA_CLIENTS["worker"], unset)
    assert code == 1
    assert "needs ONOFF_BRIDGE_KAFKA__SASL_USERNAME and ONOFF_BRIDGE_KAFKA__SASL_PASSWORD" in said


@pytest.mark.parametrize("client", sorted(REGISTRY_CLIENTS))
@pytest.mark.parametrize("credentials", ["wrong", "none"])
def test_the_registry_refuses_a_wrong_or_missing_password(
    client: str, credentials: str, env: dict[str, str], cluster: SecureEndpoints
) -> None:
    if credentials == "wrong":
        changed = env | {"ONOFF_BRIDGE_SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": WRONG}
    else:
        changed = {k: v for k, v in env.items() if k not in REGISTRY_VARS}
    code, said, took = run(REGISTRY_CLIENTS[client], changed)
    assert code == 1, said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said
    assert "refused" in errors[0] and "401" in errors[0], errors[0]
    assert WRONG not in said and cluster.registry_password.get_secret_value() not in said
    assert took < 20, f"{client} took {took:.0f}s to give up"

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas.connection import KafkaConnection, RegistryConnection


def test_plaintext_is_the_default_and_names_only_the_servers() -> None:
    assert KafkaConnection().librdkafka("b:9092") == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert KafkaConnection().ssl_context() is None


def test_sasl_ssl_gives_librdkafka_every_setting_and_extras_last() -> None:
    connection = KafkaConnection(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="bridge",
        sasl_password=SecretStr("s3cret"),
        ssl_ca_location=Path("/etc/ca.pem"),
        client_config={"client.dns.lookup": "use_all_dns_ips", "security.protocol": "SASL_SSL"},
    )
    assert connection.librdkafka("b:9093") == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "bridge",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
        "client.dns.lookup": "use_all_dns_ips",
    }


def test_a_password_never_shows_in_the_model_printed() -> None:
    connection = KafkaConnection(
        security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SecretStr("hunter2")
    )
    assert "hunter2" not in repr(connection) and "hunter2" not in str(connection)
    registry = RegistryConnection(
        url="https://r", basic_auth_user="u", basic_auth_password=SecretStr("hunter2")
    )
    assert "hunter2" not in repr(registry)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_credentials_is_refused_with_the_variables_to_set(protocol: str) -> None:
    with pytest.raises(ValidationError, match="ONOFF_BRIDGE_KAFKA__SASL_PASSWORD"):
        KafkaConnection(security_protocol=protocol, sasl_username="u")  # type: ignore[arg-type]


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="needs its key"):
        KafkaConnection(security_protocol="SSL", ssl_certificate_location=Path("/c.pem"))


def test_mtls_and_no_hostname_check() -> None:
    connection = KafkaConnection(
        security_protocol="SSL",
        ssl_certificate_location=Path("/c.pem"),
        ssl_key_location=Path("/k.pem"),
        ssl_key_password=SecretStr("kp"),
        ssl_check_hostname=False,
    )
    config = connection.librdkafka("b:1")
    assert config["ssl.certificate.location"] == "/c.pem"
    assert config["ssl.key.location"] == "/k.pem"
    assert config["ssl.key.password"] == "kp"
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert "sasl.username" not in config


def test_the_registry_gets_basic_auth_as_user_info() -> None:
    registry = RegistryConnection(
        url="https://r/apis", basic_auth_user="u", basic_auth_password=SecretStr("p")
    )
    assert registry.client_config() == {"url": "https://r/apis", "basic.auth.user.info": "u:p"}
    assert registry.httpx_auth() == ("u", "p")
    assert RegistryConnection(url="http://r").httpx_auth() is None
    with pytest.raises(ValidationError, match="both"):
        RegistryConnection(url="http://r", basic_auth_user="u")

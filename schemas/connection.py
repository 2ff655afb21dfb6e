"""How every client reaches Kafka and the registry: TLS, SASL and registry credentials.

One model for each, read as part of the service's settings
(`ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL`, `ONOFF_BRIDGE_KAFKA__SASL_PASSWORD`, …),
and one method per client library that turns it into that library's settings:
librdkafka for the ingress producer, the admin client and the tests; an
`ssl.SSLContext` plus SASL fields for aiokafka, which Faust uses. No module
assembles a client config of its own. Secrets are `SecretStr`: a model printed
or logged shows `**********`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseModel):
    """How to authenticate to Kafka and verify it; bootstrap servers are set beside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # The CA that signed the brokers' certificates; the system's CAs when unset.
    ssl_ca_location: Path | None = None
    # A client certificate and key, for mTLS (Aiven, Strimzi's tls listeners).
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # librdkafka settings the model does not name (e.g. client.dns.lookup); applied last.
    client_config: dict[str, str] = {}

    @model_validator(mode="after")
    def _complete(self) -> KafkaConnection:
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security protocol {self.security_protocol} needs"
                " ONOFF_BRIDGE_KAFKA__SASL_USERNAME and ONOFF_BRIDGE_KAFKA__SASL_PASSWORD"
            )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def librdkafka(self, bootstrap_servers: str) -> dict[str, str]:
        """Settings for confluent-kafka's Producer, Consumer and AdminClient."""
        config = {
            "bootstrap.servers": bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            assert self.sasl_username is not None and self.sasl_password is not None
            config |= {
                "sasl.mechanisms": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.get_secret_value(),
            }
        if self.uses_tls:
            if self.ssl_ca_location is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location is not None:
                config["ssl.certificate.location"] = str(self.ssl_certificate_location)
                config["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            if not self.ssl_check_hostname:
                config["ssl.endpoint.identification.algorithm"] = "none"
        return config | self.client_config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka (Faust), None for a plaintext protocol."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location is not None else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certificate_location is not None:
            password = self.ssl_key_password
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location),
                password.get_secret_value() if password is not None else None,
            )
        return context


class RegistryConnection(BaseModel):
    """Where the Schema Registry is and how to authenticate to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    ca_location: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> RegistryConnection:
        if (self.basic_auth_user is None) != (self.basic_auth_password is None):
            raise ValueError("registry basic auth needs both the user and the password")
        return self

    def client_config(self) -> dict[str, str]:
        """Settings for confluent-kafka's SchemaRegistryClient."""
        config = {"url": self.url}
        if self.basic_auth_user is not None and self.basic_auth_password is not None:
            password = self.basic_auth_password.get_secret_value()
            config["basic.auth.user.info"] = f"{self.basic_auth_user}:{password}"
        if self.ca_location is not None:
            config["ssl.ca.location"] = str(self.ca_location)
        return config

    def httpx_auth(self) -> tuple[str, str] | None:
        if self.basic_auth_user is None or self.basic_auth_password is None:
            return None
        return self.basic_auth_user, self.basic_auth_password.get_secret_value()

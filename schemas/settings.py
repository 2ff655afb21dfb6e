"""Settings every service shares: how to reach Kafka and the registry, the topics and their layout.

This is the bottom layer (see ARCHITECTURE.md): `ingress`, `processors` and
`onoff_bridge` extend `BridgeSettings` with a frozen model of their own, read
once at the entry point from `ONOFF_BRIDGE_*` variables and passed down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.connection import KafkaConnection, RegistryConnection


class TopicNames(BaseModel):
    """The topics of the design; override one with e.g. ONOFF_BRIDGE_TOPICS__CDR_RAW."""

    model_config = ConfigDict(frozen=True)

    cdr_raw: str = "onoff.cdr.raw"
    sms_raw: str = "onoff.sms.raw"
    deadletter: str = "onoff.deadletter"
    calls: str = "onoff.calls"
    recordings: str = "onoff.recordings"
    user_call_metrics: str = "onoff.user-call-metrics"


class BridgeSettings(BaseSettings):
    """Connection and topic settings common to the ingress, the processors and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="ONOFF_BRIDGE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # ONOFF_BRIDGE_KAFKA__SECURITY_PROTOCOL, ..._SASL_USERNAME, ..._SASL_PASSWORD, ...
    kafka: KafkaConnection = KafkaConnection()
    # The local stack's Apicurio serves the Confluent API under /apis/ccompat/v7;
    # for a Confluent Schema Registry this is just http://host:8081.
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    schema_registry_basic_auth_user: str | None = None
    schema_registry_basic_auth_password: SecretStr | None = None
    # The CA of an https registry whose certificate no system CA signed.
    schema_registry_ca_location: Path | None = None
    # How long a process waits at start-up for Kafka and the registry to answer
    # before it gives up with one line saying why.
    connect_timeout_s: float = Field(default=10.0, gt=0)

    topics: TopicNames = TopicNames()
    # What `onoff-bridge topics apply` makes: partitions of the keyed topics, and for
    # every topic its replicas and min.insync.replicas (3 and 2 on a production cluster).
    topic_partitions: int = Field(default=6, gt=0)
    topic_replication_factor: int = Field(default=1, gt=0)
    topic_min_insync_replicas: int = Field(default=1, gt=0)
    # onoff.cdr.raw and onoff.deadletter: the deliveries as received, kept long.
    topic_raw_retention_days: float = Field(default=365.0, gt=0)
    topic_sms_retention_days: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> BridgeSettings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                "ONOFF_BRIDGE_TOPIC_MIN_INSYNC_REPLICAS cannot exceed "
                "ONOFF_BRIDGE_TOPIC_REPLICATION_FACTOR: no acks=all write could succeed"
            )
        return self

    def kafka_config(self) -> dict[str, str]:
        """librdkafka settings for any confluent-kafka client of this service."""
        return self.kafka.librdkafka(self.kafka_bootstrap_servers)

    def registry_connection(self) -> RegistryConnection:
        return RegistryConnection(
            url=self.schema_registry_url,
            basic_auth_user=self.schema_registry_basic_auth_user,
            basic_auth_password=self.schema_registry_basic_auth_password,
            ca_location=self.schema_registry_ca_location,
        )

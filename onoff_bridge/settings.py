"""Settings every service shares: where Kafka and the registry are, and the topic names.

Each service has its own frozen model that extends `BridgeSettings`; it is read
once at the entry point from `ONOFF_BRIDGE_*` variables and passed down.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """Connection settings common to the ingress, the processors and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="ONOFF_BRIDGE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # The local stack's Apicurio serves the Confluent API under /apis/ccompat/v7;
    # for a Confluent Schema Registry this is just http://host:8081.
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    topics: TopicNames = TopicNames()
    log_level: str = "INFO"
    log_json: bool = True

"""What the ingress needs at runtime, read once from ONOFF_BRIDGE_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from schemas.settings import BridgeSettings


class IngressSettings(BridgeSettings):
    # Several named keys so a key can be rotated without downtime:
    # ONOFF_BRIDGE_API_KEYS='{"2026-q1": "...", "2026-q2": "..."}'.
    api_keys: dict[str, SecretStr] = {}
    # One more key, named "default"; what `make run` writes to var/stack.env.
    api_key: SecretStr | None = None
    allow_unauthenticated: bool = False

    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    # An oversized body is read and discarded up to this many more bytes, so a client that
    # sends it all at once reads the 413 instead of a broken pipe (nginx's lingering close).
    oversized_drain_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    delivery_timeout_s: float = Field(default=5.0, gt=0.5)
    retry_after_s: int = Field(default=5, ge=1)
    quarantine_status: Literal[200, 422] = 200

    producer_linger_ms: int = 5
    producer_compression: str = "lz4"
    producer_queue_max_messages: int = 100_000
    # Extra librdkafka properties for the producer alone; the connection's own
    # (TLS, SASL) come from ONOFF_BRIDGE_KAFKA__* like every other client's.
    producer_config: dict[str, str] = {}

    # The spool (docs/ingress.md#the-spool): what Kafka does not acknowledge in time, or
    # the registry cannot give a schema id for yet, is fsynced to local disk and answered
    # 200, then drained into Kafka in order. Off by default: a 200 then means one local
    # disk holds the record rather than Kafka's replicas, which is only worth it on a
    # volume that outlives the process (a PersistentVolume in Kubernetes).
    spool_enabled: bool = False
    # Each process takes its own worker-N directory under it (a flock says whose).
    spool_directory: Path = Path("var/spool")
    spool_max_bytes: int = Field(default=1024**3, gt=0)
    spool_segment_bytes: int = Field(default=64 * 1024**2, gt=0)
    spool_drain_batch: int = Field(default=500, ge=1)
    # At shutdown the drain may go on this long to empty the spool before the process exits.
    spool_shutdown_drain_s: float = Field(default=10.0, ge=0)

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1

    @model_validator(mode="after")
    def _keys_or_explicit_opt_out(self) -> IngressSettings:
        if not self.named_api_keys() and not self.allow_unauthenticated:
            raise ValueError(
                "no API key configured: set ONOFF_BRIDGE_API_KEYS (or ONOFF_BRIDGE_API_KEY), "
                "or ONOFF_BRIDGE_ALLOW_UNAUTHENTICATED=true to accept anyone"
            )
        return self

    def named_api_keys(self) -> dict[str, SecretStr]:
        keys = dict(self.api_keys)
        if self.api_key is not None:
            keys.setdefault("default", self.api_key)
        return keys

    @property
    def message_timeout_ms(self) -> int:
        # librdkafka must give up before the HTTP deadline, so the answer is a 503, not a hang.
        return int(self.delivery_timeout_s * 1000) - 500

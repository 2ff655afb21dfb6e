"""What the processors need at runtime, read once from ONOFF_BRIDGE_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from processors.metrics.settings import MetricsSettings
from processors.recordings.settings import RecordingSettings
from schemas.settings import BridgeSettings

MIN_PSEUDONYMIZE_KEY_CHARS = 16


class ProcessorSettings(BridgeSettings):
    # Consumer group and Faust app id: `<prefix>-<processors>`, e.g. onoff-bridge-dedupe.
    app_id_prefix: str = "onoff-bridge"
    # Table storage; both are rebuilt from their changelog topic on a new machine.
    store: Literal["memory", "rocksdb"] = "memory"
    data_dir: Path = Path("var/processors")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # Calls are kept this long after callStarted; older deliveries go to the dead-letter topic.
    dedupe_retention_days: float = Field(default=30.0, gt=0)
    # No progress for this long while records wait: /healthz answers 503 so the pod restarts.
    stall_timeout_s: float = Field(default=120.0, gt=0)
    commit_interval_s: float = Field(default=2.0, gt=0)
    # Dedupe handles up to this many deliveries at once, waiting at most this long for them.
    dedupe_batch_size: int = Field(default=1000, gt=0)
    dedupe_batch_within_s: float = Field(default=0.05, gt=0)
    # RocksDB memory per partition database (ONOFF_BRIDGE_STORE=rocksdb): block cache and
    # each of the two memtables. Faust's defaults (2 GiB, 3 x 64 MiB) grow with the state.
    rocksdb_block_cache_mb: int = Field(default=8, gt=0)
    rocksdb_write_buffer_mb: int = Field(default=4, gt=0)
    # Set: dedupe publishes HMAC-SHA256 pseudonyms of numbers and e-mails and drops names
    # (processors/pseudonyms.py, docs/pseudonyms.md). Changing it changes every pseudonym.
    pseudonymize_key: SecretStr | None = None

    # A refused secret must not be echoed in the error (pydantic shows input values).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    @field_validator("pseudonymize_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_PSEUDONYMIZE_KEY_CHARS:
            raise ValueError(
                f"ONOFF_BRIDGE_PSEUDONYMIZE_KEY must be at least {MIN_PSEUDONYMIZE_KEY_CHARS} "
                "characters (e.g. `openssl rand -hex 32`)"
            )
        return key

    recordings: RecordingSettings = RecordingSettings()
    metrics: MetricsSettings = MetricsSettings()

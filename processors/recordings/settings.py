"""Settings of the recordings processor: `ONOFF_BRIDGE_RECORDINGS__<FIELD>`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

MIB = 1024 * 1024


class RecordingSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    storage: Literal["local", "s3"] = "local"
    # Local store: objects under `<directory>/<prefix>/...`, temp files in `<directory>/.incoming`
    # (the same file system, so a rename publishes an object atomically).
    directory: Path = Path("var/recordings")
    prefix: str = "recordings"
    s3_endpoint_url: str | None = None
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # S3 needs parts of at least 5 MiB except the last one.
    s3_part_size_bytes: int = Field(default=8 * MIB, ge=5 * MIB)
    # Where downloads are spooled before an S3 upload; None: the system's temp directory.
    spool_dir: Path | None = None

    # Empty: any host whose addresses are all globally routable. Otherwise exact host
    # names, or `.example.com` for the domain and every name under it.
    allowed_hosts: list[str] = []
    # For tests only: lets loopback addresses through the address check.
    allow_loopback: bool = False
    # For tests only: exact `host:port` pairs whose addresses are not checked at all
    # (redirects away from them are checked as usual).
    trusted_endpoints: list[str] = []
    # name -> address, consulted before DNS (tests; split-horizon setups).
    host_overrides: dict[str, str] = {}

    max_bytes: int = Field(default=200 * MIB, gt=0)
    accepted_content_types: list[str] = ["audio/*", "application/octet-stream"]
    max_redirects: int = Field(default=3, ge=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # Longest silence between two chunks of the body.
    read_timeout_s: float = Field(default=30.0, gt=0)
    # One attempt, first byte to last: a trickling server cannot hold a slot forever.
    attempt_timeout_s: float = Field(default=300.0, gt=0)
    # Timeouts, connection errors and 5xx are retried with backoff until this much
    # time passed since the first attempt; then the link is recorded as failed.
    retry_deadline_s: float = Field(default=300.0, gt=0)
    retry_base_delay_s: float = Field(default=1.0, gt=0)
    retry_max_delay_s: float = Field(default=30.0, gt=0)

    # Downloads in flight per worker.
    concurrency: int = Field(default=8, ge=1)
    # Call versions taken from the topic but not finished yet, per worker: when this many
    # wait (behind slow downloads), the worker stops reading until one finishes.
    max_pending_calls: int = Field(default=256, ge=1)

    # The table of handled links forgets a call this long after the call's last update,
    # on event time (the latest lastUpdatedAt read). Longer than dedupe's retention, so
    # a call that is forgotten here gets no new version.
    retention_days: float = Field(default=35.0, gt=0)
    # How often the expiry timer looks for calls past the retention.
    expiry_interval_s: float = Field(default=600.0, gt=0)

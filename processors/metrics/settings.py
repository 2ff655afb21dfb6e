"""What the metrics processor needs beyond the shared processor settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    """Nested under ProcessorSettings.metrics: ONOFF_BRIDGE_METRICS__RETENTION_DAYS and so on."""

    model_config = ConfigDict(frozen=True)

    # Windows are kept and corrected this long after their end, on event time.
    retention_days: float = Field(default=35.0, gt=0)
    # Partitions of the internal contributions topic (placed by user) and of the
    # windows table fed by it; `onoff-bridge topics apply` creates both with this count.
    partitions: int = Field(default=6, gt=0)
    # How often the expiry timer looks for windows and calls past the retention.
    expiry_interval_s: float = Field(default=600.0, gt=0)
    # Windows are dropped only this long after they stopped accepting versions, so
    # a partition whose event time trails the others' cannot resurrect one.
    expiry_grace_hours: float = Field(default=6.0, ge=0)
    # Each agent takes up to this many records at a time, waiting at most this long for
    # them; the effects (table writes, records sent) are per batch.
    batch_size: int = Field(default=1000, gt=0)
    batch_within_s: float = Field(default=0.05, gt=0)
    # The most windows one HTTP query may return.
    max_query_windows: int = Field(default=2000, gt=0)

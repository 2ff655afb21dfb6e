"""Where the simulator sends its traffic: the same ONOFF_BRIDGE_* variables as `make run` writes."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulationSettings(BaseSettings):
    """The ingress to post to and the key to send; `source var/stack.env` sets both."""

    model_config = SettingsConfigDict(env_prefix="ONOFF_BRIDGE_", frozen=True, extra="ignore")

    ingress_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None

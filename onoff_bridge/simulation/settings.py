"""Where the simulator sends its traffic: the same ONOFF_BRIDGE_* variables as `make run` writes."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulationSettings(BaseSettings):
    """The ingress to post to, the key to send, the audio port; `source var/stack.env` sets them."""

    model_config = SettingsConfigDict(env_prefix="ONOFF_BRIDGE_", frozen=True, extra="ignore")

    ingress_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None
    # Where the audio server listens on 127.0.0.1; 0: any free port. `make run` sets the
    # one port its recordings worker trusts (loopback is refused otherwise).
    simulator_audio_port: int = 0

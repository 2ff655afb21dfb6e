"""Where the local stack keeps its files and which ports it takes."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

# deploy/local sits beside the packages in the source tree; `make` installs editable.
_DEFAULT_DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"


class StackSettings(BaseSettings):
    """Read from ONOFF_BRIDGE_STACK_* variables."""

    model_config = SettingsConfigDict(env_prefix="ONOFF_BRIDGE_STACK_", frozen=True, extra="ignore")

    home: Path = Path("var")
    deploy_dir: Path = _DEFAULT_DEPLOY_DIR
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    registry_port: int = 8081
    kafka_heap: str = "512m"
    registry_heap: str = "384m"
    java: str = "java"
    mvn: str = "mvn"
    start_timeout_s: float = 120.0

    @property
    def dist_dir(self) -> Path:
        return self.home / "dist"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"

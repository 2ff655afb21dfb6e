"""IngressSettings: no key means no start, unless the operator opted out explicitly."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from ingress.settings import IngressSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings read ONOFF_BRIDGE_* variables; a developer's shell must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith("ONOFF_BRIDGE_"):
            monkeypatch.delenv(name)


def test_no_key_is_refused_unless_unauthenticated_is_allowed() -> None:
    with pytest.raises(ValidationError, match="no API key configured"):
        IngressSettings()
    with pytest.raises(ValidationError, match="no API key configured"):
        IngressSettings(api_keys={}, api_key=None, allow_unauthenticated=False)
    opened = IngressSettings(allow_unauthenticated=True)
    assert opened.named_api_keys() == {}


def test_api_key_becomes_the_key_named_default() -> None:
    settings = IngressSettings(api_key=SecretStr("dev-key"))
    keys = settings.named_api_keys()
    assert list(keys) == ["default"]
    assert keys["default"].get_secret_value() == "dev-key"


def test_api_key_joins_the_named_keys_without_replacing_one() -> None:
    both = IngressSettings(api_keys={"q1": SecretStr("a")}, api_key=SecretStr("b"))
    assert {k: v.get_secret_value() for k, v in both.named_api_keys().items()} == {
        "q1": "a",
        "default": "b",
    }
    explicit = IngressSettings(api_keys={"default": SecretStr("a")}, api_key=SecretStr("b"))
    assert explicit.named_api_keys()["default"].get_secret_value() == "a"


def test_named_keys_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONOFF_BRIDGE_API_KEYS", '{"2026-q1": "k1", "2026-q2": "k2"}')
    settings = IngressSettings()
    assert {k: v.get_secret_value() for k, v in settings.named_api_keys().items()} == {
        "2026-q1": "k1",
        "2026-q2": "k2",
    }


def test_a_single_key_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONOFF_BRIDGE_API_KEY", "from-env")
    assert IngressSettings().named_api_keys()["default"].get_secret_value() == "from-env"


def test_the_opt_out_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONOFF_BRIDGE_ALLOW_UNAUTHENTICATED", "true")
    assert IngressSettings().allow_unauthenticated is True


def test_keys_are_never_printed() -> None:
    settings = IngressSettings(
        api_keys={"q1": SecretStr("s3cr3t-a")}, api_key=SecretStr("s3cr3t-b")
    )
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings.model_dump())


def test_settings_are_frozen() -> None:
    settings = IngressSettings(api_key=SecretStr("k"))
    with pytest.raises(ValidationError):
        settings.allow_unauthenticated = True


@pytest.mark.parametrize(
    "invalid",
    [
        {"quarantine_status": 202},
        {"quarantine_status": 500},
        {"delivery_timeout_s": 0.5},
        {"max_body_bytes": 0},
        {"retry_after_s": 0},
    ],
)
def test_out_of_range_values_are_refused(invalid: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IngressSettings(api_key=SecretStr("k"), **invalid)  # type: ignore[arg-type]


def test_librdkafka_gives_up_before_the_http_deadline() -> None:
    settings = IngressSettings(api_key=SecretStr("k"), delivery_timeout_s=2.0)
    assert settings.message_timeout_ms == 1500
    assert IngressSettings(api_key=SecretStr("k")).message_timeout_ms < 5000


def test_the_spool_is_off_by_default_and_read_from_its_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = IngressSettings(allow_unauthenticated=True)
    assert default.spool_enabled is False
    assert default.spool_max_bytes == 1024**3
    monkeypatch.setenv("ONOFF_BRIDGE_SPOOL_ENABLED", "true")
    monkeypatch.setenv("ONOFF_BRIDGE_SPOOL_DIRECTORY", "/data/spool")
    monkeypatch.setenv("ONOFF_BRIDGE_SPOOL_MAX_BYTES", "65536")
    spooling = IngressSettings(allow_unauthenticated=True)
    assert spooling.spool_enabled is True
    assert str(spooling.spool_directory) == "/data/spool"
    assert spooling.spool_max_bytes == 65536
    monkeypatch.setenv("ONOFF_BRIDGE_SPOOL_MAX_BYTES", "0")
    with pytest.raises(ValidationError):
        IngressSettings(allow_unauthenticated=True)

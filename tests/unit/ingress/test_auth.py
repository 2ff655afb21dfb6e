"""API keys: `x-api-key` or `Authorization: Bearer`, several named keys, an explicit opt-out."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.datastructures import Headers

from ingress.auth import ApiKeyAuthenticator
from ingress.errors import AuthenticationError

PRIMARY = "pk_live_6f1c2d0a9b"
SECONDARY = "pk_live_rotated_77e3"
ROTATING = ApiKeyAuthenticator({"2026-q1": SecretStr(PRIMARY), "2026-q2": SecretStr(SECONDARY)})


def refused(authenticator: ApiKeyAuthenticator, headers: dict[str, str]) -> str:
    with pytest.raises(AuthenticationError) as raised:
        authenticator.authenticate(Headers(headers))
    return str(raised.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": PRIMARY},
        {"X-API-Key": PRIMARY},
        {"x-api-key": f"  {PRIMARY} "},
        {"authorization": f"Bearer {PRIMARY}"},
        {"Authorization": f"bearer {PRIMARY}"},
        {"authorization": f"BEARER   {PRIMARY}"},
    ],
)
def test_the_key_is_accepted_in_either_header(headers: dict[str, str]) -> None:
    assert ROTATING.authenticate(Headers(headers)) == "2026-q1"


def test_during_a_rotation_both_keys_work_and_each_is_named() -> None:
    assert ROTATING.authenticate(Headers({"x-api-key": SECONDARY})) == "2026-q2"
    assert ROTATING.authenticate(Headers({"authorization": f"Bearer {SECONDARY}"})) == "2026-q2"
    assert ROTATING.authenticate(Headers({"x-api-key": PRIMARY})) == "2026-q1"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "pk_live_wrong"},
        {"x-api-key": PRIMARY + SECONDARY},
        {"x-api-key": PRIMARY[:-1]},
        {"x-api-key": PRIMARY.upper()},
        {"authorization": "Bearer pk_live_wrong"},
        # x-api-key is read first: a wrong one is not rescued by a right Bearer.
        {"x-api-key": "pk_live_wrong", "authorization": f"Bearer {PRIMARY}"},
    ],
)
def test_a_wrong_key_is_refused(headers: dict[str, str]) -> None:
    assert refused(ROTATING, headers) == "invalid API key"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "", "authorization": ""},
        {"authorization": PRIMARY},
        {"authorization": f"Basic {PRIMARY}"},
        {"authorization": "Basic " + base64.b64encode(f"onoff:{PRIMARY}".encode()).decode()},
        {"authorization": f"Token {PRIMARY}"},
        {"authorization": f"Bearer{PRIMARY}"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer    "},
        {"api-key": PRIMARY},
        {"x-api-token": PRIMARY},
        {"cookie": f"x-api-key={PRIMARY}"},
    ],
)
def test_a_missing_key_or_a_key_in_the_wrong_header_form_is_refused(
    headers: dict[str, str],
) -> None:
    assert refused(ROTATING, headers) == "missing API key"


def test_with_no_keys_and_no_opt_out_nothing_is_accepted() -> None:
    closed = ApiKeyAuthenticator({})
    assert refused(closed, {}) == "missing API key"
    assert refused(closed, {"x-api-key": PRIMARY}) == "invalid API key"
    assert refused(closed, {"x-api-key": ""}) == "missing API key"


@pytest.mark.parametrize(
    "headers", [{}, {"x-api-key": "anything"}, {"authorization": "Basic Zm9vOmJhcg=="}]
)
def test_an_open_ingress_accepts_anyone_without_naming_a_key(headers: dict[str, str]) -> None:
    assert (
        ApiKeyAuthenticator({}, allow_unauthenticated=True).authenticate(Headers(headers)) is None
    )


def test_the_opt_out_does_not_open_an_ingress_that_has_keys() -> None:
    keyed = ApiKeyAuthenticator({"only": SecretStr(PRIMARY)}, allow_unauthenticated=True)
    assert refused(keyed, {}) == "missing API key"
    assert refused(keyed, {"x-api-key": "nope"}) == "invalid API key"
    assert keyed.authenticate(Headers({"x-api-key": PRIMARY})) == "only"


def test_the_first_of_two_equal_keys_is_named() -> None:
    same = ApiKeyAuthenticator({"old": SecretStr(PRIMARY), "new": SecretStr(PRIMARY)})
    assert same.authenticate(Headers({"x-api-key": PRIMARY})) == "old"


def test_the_error_never_contains_the_presented_key() -> None:
    assert "pk_live_wrong" not in refused(ROTATING, {"x-api-key": "pk_live_wrong"})


header_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)


@given(header_text, st.sampled_from(["x-api-key", "bearer"]))
def test_any_other_key_is_refused(key: str, form: str) -> None:
    headers = {"x-api-key": key} if form == "x-api-key" else {"authorization": f"Bearer {key}"}
    if key in (PRIMARY, SECONDARY):
        assert ROTATING.authenticate(Headers(headers)) is not None
    else:
        assert refused(ROTATING, headers) == "invalid API key"

"""Pseudonyms of numbers and e-mails: normalized, keyed, stable, and nothing left in clear."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from processors.merge import Outcome, fold
from processors.metrics.windows import user_key, windows_of
from processors.pseudonyms import (
    Pseudonymizer,
    normalize_email,
    normalize_number,
    pseudonym,
    pseudonymize,
)
from tests.unit.processors.test_merge import FIRST, delivery

KEY = b"unit-test-key-0123456789abcdef"
HEX64 = re.compile(r"[0-9a-f]{64}")
PERSON = {
    "onoffUserName": "Ada Moreau",
    "onoffUserEmail": " Ada.Moreau@Example.com ",
    "onoffUserNumber": "+33 6 12 34 56 78",
    "externalNumber": "0044 20-7946-0018",
    "externalName": "Bram Keller",
    "externalEmail": "bram.keller@example.org",
}


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("+33612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6.12-34/56/78", "+330612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("06 12 34 56 78", "0612345678"),
        (" Anonymous ", "anonymous"),
    ],
)
def test_numbers_are_normalized_to_e164_digits(given: str, normalized: str) -> None:
    assert normalize_number(given) == normalized


def test_emails_are_trimmed_and_lowercased() -> None:
    assert normalize_email("  Ada.Moreau@Example.COM\n") == "ada.moreau@example.com"


def test_the_pseudonym_is_the_hmac_a_data_team_computes_from_the_clear_value() -> None:
    expected = hmac.new(KEY, b"+33612345678", hashlib.sha256).hexdigest()
    result = pseudonymize({"externalNumber": "0033 6 12 34 56 78"}, KEY)
    assert result["externalNumber"] == expected == pseudonym(KEY, "+33612345678")


def test_the_same_person_gets_the_same_pseudonym_in_any_format_and_field() -> None:
    one = pseudonymize({"onoffUserNumber": "+33 6 12 34 56 78"}, KEY)
    other = pseudonymize({"externalNumber": "0033612345678"}, KEY)
    assert one["onoffUserNumber"] == other["externalNumber"]
    mails = pseudonymize(
        {"onoffUserEmail": "Ada@Example.com", "externalEmail": " ada@example.com"}, KEY
    )
    assert mails["onoffUserEmail"] == mails["externalEmail"]


def test_another_key_gives_other_pseudonyms() -> None:
    assert pseudonymize(PERSON, KEY) != pseudonymize(PERSON, b"another-key-0123456789abcdef")


def test_no_personal_value_stays_in_clear_and_names_are_dropped() -> None:
    body: dict[str, Any] = {"id": "c-1", "callStatus": "ANSWERED", "callDuration": 396, **PERSON}
    result = pseudonymize(body, KEY)
    assert result["onoffUserName"] is None and result["externalName"] is None
    for field in ("onoffUserEmail", "onoffUserNumber", "externalNumber", "externalEmail"):
        assert HEX64.fullmatch(result[field]), field
    text = repr(result)
    for value in ("Ada", "Moreau", "Bram", "Keller", "example", "612", "7946"):
        assert value not in text
    assert {k: result[k] for k in ("id", "callStatus", "callDuration")} == {
        "id": "c-1",
        "callStatus": "ANSWERED",
        "callDuration": 396,
    }
    assert body["onoffUserNumber"] == PERSON["onoffUserNumber"]  # the input is not changed


def test_missing_null_and_blank_values_stay_null_and_absent_fields_stay_absent() -> None:
    result = pseudonymize({"onoffUserEmail": "  ", "externalNumber": None}, KEY)
    assert result == {"onoffUserEmail": None, "externalNumber": None}


def test_without_a_key_the_delivery_passes_untouched() -> None:
    body = {"id": "c-1", **PERSON}
    assert Pseudonymizer(None)(body) is body
    assert not Pseudonymizer(None).enabled
    assert Pseudonymizer(SecretStr(KEY.decode()))(body) == pseudonymize(body, KEY)


def test_the_metrics_user_key_of_a_pseudonymized_call_is_the_pseudonym() -> None:
    hashed = Pseudonymizer(SecretStr(KEY.decode()))
    outcome, call = fold(
        None, hashed(delivery(0, **(FIRST | {"onoffUserEmail": "Ada@Example.com"})))
    )
    assert outcome is Outcome.NEW_VERSION
    assert user_key(call) == pseudonym(KEY, "ada@example.com")
    assert all(w.user == pseudonym(KEY, "ada@example.com") for w in windows_of(call))


def test_a_repeat_is_still_a_duplicate_because_the_content_hash_is_the_raw_bodys() -> None:
    hashed = Pseudonymizer(SecretStr(KEY.decode()))
    first = delivery(0, **(FIRST | PERSON))
    _, call = fold(None, hashed(first))
    outcome, _ = fold(call, hashed(dict(first)))
    assert outcome is Outcome.DUPLICATE


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_value_becomes_a_pseudonym_or_null_never_itself(number: str, email: str) -> None:
    result = pseudonymize({"externalNumber": number, "externalEmail": email}, KEY)
    for value, out in ((number, result["externalNumber"]), (email, result["externalEmail"])):
        if value.strip():
            assert HEX64.fullmatch(out)
        else:
            assert out is None

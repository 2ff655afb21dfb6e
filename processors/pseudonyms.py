"""Pseudonyms for the personal fields of a call delivery, so onoff.calls holds none in clear.

With `ONOFF_BRIDGE_PSEUDONYMIZE_KEY` set, dedupe replaces each phone number
and e-mail address of a delivery by the HMAC-SHA256 of its normalized form
(64 lowercase hex characters) before folding it into the call, and drops the
names. Everything downstream (onoff.calls, the metrics' user keys, the
recordings' calls) then sees pseudonyms only. onoff.cdr.raw keeps what the
sender sent.

Normalized first, so the same person gives the same pseudonym in every field
and every call, and joins work:

- e-mail: trimmed, lowercased;
- number: spaces, dots, dashes, slashes and brackets removed, a leading `00`
  written `+`; so `+33 6 12-34-56-78` and `0033612345678` are both
  `+33612345678`. A number without a country code (`06 12 34 56 78`) has no
  E.164 form without knowing the country, and hashes as its digits
  (`0612345678`); Onoff sends E.164. Anything else (`anonymous`) is trimmed
  and lowercased, then hashed like a number, never kept in clear.

Names are dropped, not hashed: a name identifies nobody reliably, so its hash
joins nothing, while a short name's hash is easy to guess by anyone who holds
the key. docs/pseudonyms.md says what is covered and what is not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

NUMBER_FIELDS = ("onoffUserNumber", "externalNumber")
EMAIL_FIELDS = ("onoffUserEmail", "externalEmail")
NAME_FIELDS = ("onoffUserName", "externalName")

_SEPARATORS = re.compile(r"[\s.\-/()\[\]]+")
_NUMBER = re.compile(r"\+?\d+")


def normalize_number(value: str) -> str:
    compact = _SEPARATORS.sub("", value)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if _NUMBER.fullmatch(compact):
        return compact
    return value.strip().lower()


def normalize_email(value: str) -> str:
    return value.strip().lower()


def pseudonym(key: bytes, normalized: str) -> str:
    """HMAC-SHA256 of an already normalized value, as lowercase hex."""
    return hmac.new(key, normalized.encode(), hashlib.sha256).hexdigest()


def pseudonymize(delivery: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """`delivery` with its numbers and e-mails replaced by pseudonyms and its names dropped.

    Pure. A field that is missing, null or blank stays null: a blank value
    hashed would make every caller without a number one and the same person.
    """
    result = dict(delivery)
    for fields, normalize in ((NUMBER_FIELDS, normalize_number), (EMAIL_FIELDS, normalize_email)):
        for field in fields:
            if field not in delivery:
                continue
            value = delivery[field]
            text = value.strip() if isinstance(value, str) else ""
            result[field] = pseudonym(key, normalize(text)) if text else None
    for field in NAME_FIELDS:
        if field in result:
            result[field] = None
    return result


class Pseudonymizer:
    """`pseudonymize` with the configured key; the identity when no key is set."""

    def __init__(self, key: SecretStr | None) -> None:
        self._key = None if key is None else key.get_secret_value().encode()

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, delivery: dict[str, Any]) -> dict[str, Any]:
        if self._key is None:
            return delivery  # not copied: the hot path pays nothing when it is off
        return pseudonymize(delivery, self._key)

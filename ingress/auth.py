"""API-key authentication: `x-api-key: <key>` or `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from ingress.errors import AuthenticationError

ANONYMOUS = None


class ApiKeyAuthenticator:
    def __init__(self, keys: Mapping[str, SecretStr], allow_unauthenticated: bool = False) -> None:
        self._keys = [(name, key.get_secret_value().encode()) for name, key in keys.items()]
        self._allow_unauthenticated = allow_unauthenticated

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """Returns the name of the matching key; raises AuthenticationError otherwise."""
        if not self._keys and self._allow_unauthenticated:
            return ANONYMOUS
        presented = _presented_key(headers)
        if presented is None:
            raise AuthenticationError("missing API key")
        matched = None
        # Compare with every key, whatever matches, so timing says nothing about which did.
        for name, key in self._keys:
            if hmac.compare_digest(presented, key) and matched is None:
                matched = name
        if matched is None:
            raise AuthenticationError("invalid API key")
        return matched


def _presented_key(headers: Mapping[str, str]) -> bytes | None:
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key.strip().encode()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip().encode()
    return None

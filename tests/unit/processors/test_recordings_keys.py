"""Keys of onoff.recordings: one per (call, kind, link), stable, free of the signed query."""

from __future__ import annotations

import hashlib

from processors.recordings.processor import link_mark, record_key

SIGNED = "https://cdn.example.com/calls/c-1/a.mp3?X-Amz-Signature=s3cr3t&X-Amz-Expires=600"
OTHER = "https://cdn.example.com/calls/c-1/b.mp3?X-Amz-Signature=0th3r"


def test_two_links_of_one_call_and_kind_get_two_keys() -> None:
    first, second = record_key("c-1", "recording", SIGNED), record_key("c-1", "recording", OTHER)
    assert first != second
    assert first.startswith("c-1/recording/") and second.startswith("c-1/recording/")
    assert record_key("c-1", "voicemail", SIGNED) != first


def test_a_key_is_the_call_the_kind_and_a_digest_of_the_url() -> None:
    digest = hashlib.sha256(SIGNED.encode()).hexdigest()[:32]
    assert record_key("c-1", "recording", SIGNED) == f"c-1/recording/{digest}"
    # The same digest as the handled-links table, so both name a link alike.
    assert link_mark("recording", SIGNED) == f"recording:{digest}"


def test_a_key_does_not_carry_the_signed_query() -> None:
    key = record_key("c-1", "recording", SIGNED)
    assert "s3cr3t" not in key and "Signature" not in key and "cdn.example.com" not in key

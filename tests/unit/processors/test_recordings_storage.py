"""Object names: the documented layout, safe for any call id, stable for the same content."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from processors.recordings.fetch import redact
from processors.recordings.storage import extension_for, object_key, path_segment

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_the_key_layout() -> None:
    key = object_key("recordings", date(2026, 3, 2), "c-7f3a2b10-0001", "recording", SHA, "mp3")
    assert key == "recordings/2026/03/02/c-7f3a2b10-0001/recording-9f86d081884c7d65.mp3"
    assert object_key("", date(2026, 12, 31), "c1", "voicemail", SHA, "wav") == (
        "2026/12/31/c1/voicemail-9f86d081884c7d65.wav"
    )
    assert object_key("/tenant/a/", date(2026, 1, 5), "c1", "voicemail", SHA, "wav").startswith(
        "tenant/a/2026/01/05/c1/"
    )


@pytest.mark.parametrize("call_id", ["..", ".", "../../etc", "a/b", "a\\b", "", "~root", "%2e%2e"])
def test_an_untrusted_call_id_stays_one_segment(call_id: str) -> None:
    segment = path_segment(call_id)
    assert "/" not in segment and "\\" not in segment
    assert segment not in {"", ".", ".."} and not segment.startswith(".")


def test_distinct_call_ids_stay_distinct() -> None:
    long = "/" * 100
    ids = [
        "a/b",
        "a_b",
        "a%2Fb",
        "a%2fb",
        "a.b",
        "a%2Eb",
        "a~b",
        "a%7Eb",
        "",
        "_",
        long,
        long + "x",
    ]
    assert len({path_segment(i) for i in ids}) == len(ids)


@given(st.text(max_size=300), st.text(max_size=300))
def test_the_segment_of_a_call_id_is_its_own(first: str, second: str) -> None:
    assume(first != second)
    assert path_segment(first) != path_segment(second)


@pytest.mark.parametrize(
    ("content_type", "url", "extension"),
    [
        ("audio/mpeg", "https://x/y", "mp3"),
        ("audio/x-wav", "https://x/y.mp3", "wav"),
        ("application/octet-stream", "https://x/calls/c1.OGG?sig=1", "ogg"),
        ("application/octet-stream", "https://x/calls/c1", "bin"),
        ("audio/x-unknown", "https://x/calls/c1.tar.gz.evil/", "bin"),
    ],
)
def test_the_extension(content_type: str, url: str, extension: str) -> None:
    assert extension_for(content_type, url) == extension


def test_redact_drops_query_and_credentials() -> None:
    assert redact("https://u:p@cdn.example.com:8443/a.mp3?X-Amz-Signature=abc#f") == (
        "https://cdn.example.com:8443/a.mp3"
    )
    assert redact("http://[::1]/a") == "http://[::1]/a"

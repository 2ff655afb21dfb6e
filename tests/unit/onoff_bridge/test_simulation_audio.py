"""The simulator's audio server: link behaviours, and the slow, failing server of the faults."""

from __future__ import annotations

import time
from collections import Counter

import httpx

from onoff_bridge.simulation.audio import AudioFaults, audio_bytes, expired_status, serving_audio
from onoff_bridge.simulation.traffic import AudioLink, LinkBehaviour


def _link(behaviour: LinkBehaviour, base: str) -> AudioLink:
    path = f"/audio/{behaviour.value}/c1/recording.mp3"
    return AudioLink(path, base + path + "?sig=1", "c1", "recording", behaviour)


def _get(client: httpx.Client, url: str) -> str:
    try:
        response = client.get(url)
    except httpx.RemoteProtocolError:
        return "cut"
    return str(response.status_code)


def test_each_link_behaves_as_its_path_says_and_counts_as_fetched_once_final() -> None:
    with serving_audio() as server, httpx.Client(trust_env=False) as client:
        ok, expired, flaky = (_link(b, server.base_url) for b in LinkBehaviour)
        assert not server.fetched(ok)
        response = client.get(ok.url)
        assert response.content == audio_bytes(ok.path)
        # The server counts a link once it has written the whole body, which can be just
        # after the client has read it: waited for, not read at once.
        assert server.wait_fetched([ok], 5) == []
        assert _get(client, flaky.url) == "503"
        assert not server.fetched(flaky)
        assert client.get(flaky.url).content == audio_bytes(flaky.path)
        assert server.wait_fetched([flaky], 5) == []
        assert _get(client, expired.url) == str(expired_status(expired.path))
        assert server.wait_fetched([expired], 5) == []
        assert server.wait_fetched([ok, flaky, expired], 0) == []


def test_a_failing_server_fails_about_the_share_asked_and_never_serves_other_bytes() -> None:
    faults = AudioFaults(failure_share=0.5, delay_s=0.0, seed=7)
    with serving_audio(faults) as server, httpx.Client(trust_env=False) as client:
        link = _link(LinkBehaviour.OK, server.base_url)
        outcomes: Counter[str] = Counter()
        for _ in range(200):
            outcome = _get(client, link.url)
            outcomes[outcome] += 1
        assert set(outcomes) == {"200", "500", "503", "cut"}, outcomes
        assert 70 <= outcomes["200"] <= 130, outcomes
        # The server counts an answer once it is written, which can be just after the
        # client has read it.
        deadline = time.monotonic() + 5
        while server.answers.total() < outcomes.total() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.answers == outcomes
        assert server.fetched(link)


def test_a_body_cut_off_does_not_count_as_fetched() -> None:
    faults = AudioFaults(failure_share=1.0, seed=1)
    with serving_audio(faults) as server, httpx.Client(trust_env=False) as client:
        link = _link(LinkBehaviour.OK, server.base_url)
        seen = {_get(client, link.url) for _ in range(30)}
        assert seen == {"500", "503", "cut"}
        assert not server.fetched(link)
        assert server.wait_fetched([link], 0.3) == [link]


def test_a_slow_server_answers_late() -> None:
    with (
        serving_audio(AudioFaults(delay_s=0.4)) as server,
        httpx.Client(trust_env=False) as client,
    ):
        link = _link(LinkBehaviour.OK, server.base_url)
        started = time.monotonic()
        assert client.get(link.url).status_code == 200
        assert time.monotonic() - started >= 0.2

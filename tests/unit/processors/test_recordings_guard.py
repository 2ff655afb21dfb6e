"""The SSRF address guard: which addresses and URLs it refuses, with an injected resolver."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address, ip_address

import httpx
import pytest

from processors.recordings.errors import (
    AddressRejectedError,
    RecordingFailedError,
    RecordingRejectedError,
)
from processors.recordings.guard import AddressGuard, IPAddress, address_refusal, embedded_ipv4

REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "::1",
    "fd00:ec2::254",
    "::ffff:127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    # and a few more of each family
    "172.16.0.1",
    "192.168.1.1",
    "100.100.100.200",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.170",
    "fe80::1",
    "ff02::1",
    "ff0e::1",
    "::",
    "::7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",
    "64:ff9b:1::1",
    "2002:a00:1::",
    "2001:db8::1",
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert address_refusal(ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"])
def test_allow_loopback_lets_only_loopback_through(address: str) -> None:
    assert address_refusal(ip_address(address), allow_loopback=True) is None
    assert address_refusal(ip_address("10.0.0.1"), allow_loopback=True) is not None
    assert address_refusal(ip_address("169.254.169.254"), allow_loopback=True) is not None


def test_transition_addresses_are_unwrapped() -> None:
    assert embedded_ipv4(IPv6Address("::ffff:1.2.3.4")) == ip_address("1.2.3.4")
    assert embedded_ipv4(IPv6Address("64:ff9b::102:304")) == ip_address("1.2.3.4")
    assert embedded_ipv4(IPv6Address("2002:102:304::")) == ip_address("1.2.3.4")
    assert embedded_ipv4(IPv6Address("2606:4700::1")) is None


def resolving(table: dict[str, list[str]]):
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ip_address(a) for a in table.get(host, [])]

    return resolve, asked


def vet(guard: AddressGuard, url: str):
    return asyncio.run(guard.vet(httpx.URL(url)))


def test_a_name_is_vetted_by_every_address_it_resolves_to() -> None:
    resolve, asked = resolving(
        {"cdn.example.com": ["93.184.216.34"], "mixed.example.com": ["93.184.216.34", "10.1.2.3"]}
    )
    guard = AddressGuard.build(resolver=resolve)
    target = vet(guard, "https://cdn.example.com/a.mp3?sig=secret")
    assert target.address == ip_address("93.184.216.34")
    assert (target.host, target.port) == ("cdn.example.com", 443)
    with pytest.raises(AddressRejectedError, match=r"10\.1\.2\.3 is a private address"):
        vet(guard, "https://mixed.example.com/a.mp3")
    assert asked == ["cdn.example.com", "mixed.example.com"]


def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    resolve, _ = resolving({"internal.example.com": ["192.168.0.10"]})
    with pytest.raises(AddressRejectedError, match="private"):
        vet(AddressGuard.build(resolver=resolve), "http://internal.example.com/x.wav")
    overrides = AddressGuard.build(host_overrides={"meta.example.com": "169.254.169.254"})
    with pytest.raises(AddressRejectedError, match="metadata"):
        vet(overrides, "http://meta.example.com/latest/meta-data/")


def test_literal_addresses_are_checked_without_resolving() -> None:
    resolve, asked = resolving({})
    guard = AddressGuard.build(resolver=resolve)
    for url in ["http://127.0.0.1/", "http://[::1]:8080/", "http://[::ffff:7f00:1]/"]:
        with pytest.raises(AddressRejectedError):
            vet(guard, url)
    assert vet(guard, "http://8.8.8.8/a.mp3").address == ip_address("8.8.8.8")
    assert asked == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://8.8.8.8/a.mp3", "gopher://8.8.8.8/", "http://u:p@8.8.8.8/"]
)
def test_only_plain_http_and_https_urls_pass(url: str) -> None:
    with pytest.raises(RecordingRejectedError):
        vet(AddressGuard.build(), url)


def test_the_allowlist_limits_hosts() -> None:
    resolve, _ = resolving({"a.onoff.app": ["8.8.8.8"], "evil.com": ["8.8.8.8"]})
    guard = AddressGuard.build(allowed_hosts=[".onoff.app", "exact.example.com"], resolver=resolve)
    assert vet(guard, "https://a.onoff.app/x.mp3").host == "a.onoff.app"
    with pytest.raises(AddressRejectedError, match="allowlist"):
        vet(guard, "https://evil.com/x.mp3")
    with pytest.raises(AddressRejectedError, match="allowlist"):
        vet(guard, "https://notonoff.app/x.mp3")


def test_a_trusted_endpoint_is_exact_host_and_port() -> None:
    guard = AddressGuard.build(trusted_endpoints=["127.0.0.1:8000"])
    assert vet(guard, "http://127.0.0.1:8000/a.mp3").port == 8000
    with pytest.raises(AddressRejectedError, match="loopback"):
        vet(guard, "http://127.0.0.1:8001/a.mp3")


def test_a_name_without_addresses_fails() -> None:
    resolve, _ = resolving({})
    with pytest.raises(RecordingFailedError):
        vet(AddressGuard.build(resolver=resolve), "https://nowhere.example.com/a.mp3")

"""SSRF defence: decides whether a URL may be fetched and which address to connect to.

The URL comes from a webhook body, so it is untrusted. A URL passes when its
scheme is http or https, its host is allowed (when an allowlist is set), and
*every* address its name resolves to is globally routable. The caller then
connects to the vetted address itself (see `fetch.py`) instead of letting the
HTTP client resolve the name again, so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach a private address.

Python 3.11's `is_global` calls multicast and some IPv6 transition prefixes
global, so the check below also refuses multicast, reserved and unspecified
addresses explicitly, and judges an IPv6 address that embeds an IPv4 one
(IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) by that IPv4 address,
which is where the packets really go.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx

from processors.recordings.errors import (
    AddressRejectedError,
    RecordingFailedError,
    RecordingRejectedError,
    TransientFetchError,
)

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

SCHEMES = {"http": 80, "https": 443}
_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_SHARED = IPv4Network("100.64.0.0/10")  # carrier-grade NAT; also Alibaba's metadata service
# Cloud metadata services; all are also non-global, named here for the reason given.
_METADATA = {
    ip_address("169.254.169.254"),
    ip_address("169.254.170.2"),
    ip_address("100.100.100.200"),
    ip_address("fd00:ec2::254"),
}


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 transition address carries, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def address_refusal(address: IPAddress, allow_loopback: bool = False) -> str | None:
    """Why `address` must not be connected to, or None when it may."""
    if isinstance(address, IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = address_refusal(inner, allow_loopback)
            return None if reason is None else f"{reason} (embedded in {address})"
        if address in _NAT64_LOCAL:
            return f"{address} is a local-use NAT64 address"
    if address in _METADATA:
        return f"{address} is a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else f"{address} is a loopback address"
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, IPv4Address) and address in _SHARED:
        return f"{address} is a shared (carrier-grade NAT) address"
    if address.is_private:
        return f"{address} is a private address"
    if address.is_reserved:
        return f"{address} is a reserved address"
    if not address.is_global:
        return f"{address} is not globally routable"
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`, in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise TransientFetchError(f"cannot resolve {host}: {exc.strerror}") from exc
        raise RecordingFailedError(f"cannot resolve {host}: {exc.strerror}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # IPv6 scope ids ("fe80::1%eth0") are cut off; such addresses are refused anyway.
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class VettedTarget:
    """A URL that passed the guard, and the address to connect to for it."""

    url: httpx.URL
    host: str
    port: int
    address: IPAddress


@dataclass(frozen=True)
class AddressGuard:
    allowed_hosts: frozenset[str] = frozenset()
    allow_loopback: bool = False
    trusted_endpoints: frozenset[str] = frozenset()
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    resolver: Resolver = system_resolver

    @classmethod
    def build(
        cls,
        allowed_hosts: Iterable[str] = (),
        allow_loopback: bool = False,
        trusted_endpoints: Iterable[str] = (),
        host_overrides: Mapping[str, str] | None = None,
        resolver: Resolver = system_resolver,
    ) -> AddressGuard:
        return cls(
            allowed_hosts=frozenset(h.lower().rstrip(".") for h in allowed_hosts),
            allow_loopback=allow_loopback,
            trusted_endpoints=frozenset(e.lower() for e in trusted_endpoints),
            host_overrides={k.lower(): v for k, v in (host_overrides or {}).items()},
            resolver=resolver,
        )

    async def vet(self, url: httpx.URL) -> VettedTarget:
        """Checks `url`; raises `RecordingRejectedError` (or a resolution error) if refused."""
        if url.scheme not in SCHEMES:
            raise RecordingRejectedError(f"scheme {url.scheme or '(none)'!r} is not allowed")
        host = url.host.lower().rstrip(".")
        if not host:
            raise RecordingRejectedError("the URL has no host")
        if url.userinfo:
            raise RecordingRejectedError("credentials in the URL are not allowed")
        port = url.port or SCHEMES[url.scheme]
        if self.allowed_hosts and not self._host_allowed(host):
            raise AddressRejectedError(f"host {host} is not in the allowlist")
        addresses = await self._addresses(host, port)
        if not addresses:
            raise RecordingFailedError(f"{host} resolves to no address")
        if f"{host}:{port}" not in self.trusted_endpoints:
            for address in addresses:
                reason = address_refusal(address, self.allow_loopback)
                if reason is not None:
                    raise AddressRejectedError(f"{host} resolves to {reason}")
        return VettedTarget(url=url, host=host, port=port, address=addresses[0])

    def _host_allowed(self, host: str) -> bool:
        return host in self.allowed_hosts or any(
            entry.startswith(".") and (host.endswith(entry) or host == entry[1:])
            for entry in self.allowed_hosts
        )

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        literal = host.strip("[]")
        try:
            return [ip_address(literal)]
        except ValueError:
            pass
        override = self.host_overrides.get(host)
        if override is not None:
            return [ip_address(override)]
        return await self.resolver(host, port)

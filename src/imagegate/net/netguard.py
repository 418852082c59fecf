"""Which addresses the service may connect to on a client's behalf, and connecting only there.

Used for every request made on a client's behalf (reference images, relay results, callbacks;
all through ``net.download``): resolve the host, refuse it when any of its addresses is not
public (loopback, private, link-local, multicast, reserved, and IPv6 forms that carry such an
IPv4 address), and connect to the address that was checked, so that DNS rebinding between the
check and the connect cannot move the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

__all__ = ["AddressPolicy", "AddressRefused", "Guard", "IPAddress", "NotPublic", "PinnedTarget",
           "ResolveTimeout", "Resolver", "UnresolvedHost", "is_public_address", "parse_ip",
           "resolve_host", "without_userinfo"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> IP address strings``; raises ``OSError`` when the name does not resolve."""
AddressPolicy = Callable[[IPAddress], bool]
"""``address -> may we connect to it``; used when private networks are not allowed."""

# Ranges refused on top of ``not ip.is_global``: Python's tables differ between releases and
# leave multicast, benchmarking, site-local and NAT64 forms open in some of them.
_BLOCKED_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
))
_BLOCKED_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
    "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "fc00::/7", "fe80::/10",
    "fec0::/10", "ff00::/8",
))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_USERINFO = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)[^/?#]*@")


class AddressRefused(Exception):
    """The URL may not be contacted; the message says why, for a person."""


class NotPublic(AddressRefused):
    """An address of the host is one the policy refuses.

    The message names the address only when the URL itself is that address: what a name
    resolves to inside our network is not the client's business. ``detail`` names it, for the
    operator's log.
    """

    def __init__(self, address: IPAddress, host: str | None = None) -> None:
        if host is None:
            super().__init__(f"address {shown(address)} is not public")
            self.detail = str(self)
        else:
            super().__init__("the host is not a public address")
            self.detail = f"address {shown(address)} of host {host} is not public"
        self.address = address
        self.host = host


class UnresolvedHost(AddressRefused):
    """The host's name did not resolve, so it could not be checked; it may resolve later."""


class ResolveTimeout(UnresolvedHost):
    """Looking the host's name up took longer than the guard allows."""


@dataclass(frozen=True)
class PinnedTarget:
    """What to send for one hop: the URL to connect to, its headers and request extensions."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str] = field(default_factory=dict)


def is_public_address(ip: IPAddress) -> bool:
    """True when ``ip`` is a globally routable unicast address.

    IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64 well-known prefix) are judged
    by the IPv4 address they carry.
    """
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return is_public_address(embedded)
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    blocked = _BLOCKED_V4 if isinstance(ip, ipaddress.IPv4Address) else _BLOCKED_V6
    return not any(ip in network for network in blocked)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def resolve_host(host: str, port: int) -> list[str]:
    """The default ``Resolver``: the system resolver, run by the event loop. Raises ``OSError``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def without_userinfo(url: str) -> str:
    """``url`` fit to show: any ``user:password@`` removed from its authority. Works on text
    that is not a valid URL too (anything up to the last ``@`` of the authority goes)."""
    return _USERINFO.sub(r"\1", url, count=1)


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def shown(ip: IPAddress) -> str:
    """The address as a person writes it; IPv4-mapped ones keep their dotted part on all Pythons."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


@dataclass(frozen=True)
class Guard:
    """Where requests made on a client's behalf may go.

    With ``allow_private`` (the server's ``allow_private_networks``, or a route's
    ``private_results``) every http(s) URL is used as written. Otherwise the host's addresses
    must all pass ``policy``; names are looked up by ``resolver``, each lookup bounded by
    ``resolve_timeout_s`` seconds (``None``: by nothing but the caller's own deadline).
    """

    allow_private: bool = False
    resolver: Resolver = resolve_host
    policy: AddressPolicy = is_public_address
    resolve_timeout_s: float | None = None

    async def pin(self, url: httpx.URL,
                  headers: Mapping[str, str] | None = None) -> PinnedTarget:
        """Check the URL's scheme and host; the target to connect to, pinned to the checked
        address, with the name in ``Host`` (and, for https, in SNI and certificate checks).

        Raises ``AddressRefused``: ``NotPublic``, ``UnresolvedHost`` or ``ResolveTimeout`` for
        the host, the base class for the URL itself.
        """
        headers = dict(headers or {})
        if url.scheme not in ("http", "https"):
            raise AddressRefused("only http and https URLs are allowed")
        host = url.raw_host.decode("ascii")
        if not host:
            raise AddressRefused("URL has no host")
        if self.allow_private:
            return PinnedTarget(url, headers)
        address = await self._checked_address(url, host)
        pinned_headers = {**headers, "Host": url.netloc.decode("ascii")}
        extensions = {}
        if url.scheme == "https" and parse_ip(host) is None:
            # TLS SNI and certificate verification use the name, not the pinned address.
            extensions["sni_hostname"] = host
        try:
            pinned = url.copy_with(host=str(address))
        except httpx.InvalidURL as exc:
            raise AddressRefused("not a valid URL") from exc
        return PinnedTarget(pinned, pinned_headers, extensions)

    async def _checked_address(self, url: httpx.URL, host: str) -> IPAddress:
        """The address to connect to; refuses the host if any of its addresses is not allowed."""
        literal = parse_ip(host)
        if literal is not None:
            if not self.policy(literal):
                raise NotPublic(literal)
            return literal
        valid = await self._lookup(url, host)
        for address in valid:
            if not self.policy(address):
                raise NotPublic(address, host)
        return valid[0]

    async def _lookup(self, url: httpx.URL, host: str) -> list[IPAddress]:
        port = url.port or (443 if url.scheme == "https" else 80)
        deadline = asyncio.timeout(self.resolve_timeout_s)
        try:
            async with deadline:
                answers = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:  # TimeoutError is an OSError
            if deadline.expired():
                raise ResolveTimeout(f"resolving host {host} took more than "
                                     f"{self.resolve_timeout_s:g} s") from exc
            raise UnresolvedHost(f"could not resolve host {host}") from exc
        addresses = [parse_ip(answer) for answer in answers]
        valid = [address for address in addresses if address is not None]
        if not valid or len(valid) != len(addresses):
            raise UnresolvedHost(f"could not resolve host {host}")
        return valid

"""Which addresses the service may connect to on a client's behalf, and connecting only there.

Used for reference images (fetch.py) and callback URLs (webhooks.py): resolve the host, refuse
it when any of its addresses is not public (loopback, private, link-local, multicast, reserved,
and IPv6 forms that carry such an IPv4 address), and connect to the address that was checked,
so that DNS rebinding between the check and the connect cannot move the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

__all__ = ["AddressPolicy", "AddressRefused", "IPAddress", "PinnedTarget", "Resolver",
           "is_public_address", "pin", "resolve_host"]

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




class AddressRefused(Exception):
    """The URL may not be contacted; the message says why, for a person."""


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




async def pin(url: httpx.URL, *, headers: dict[str, str], allow_private: bool,
              resolver: Resolver = resolve_host,
              policy: AddressPolicy = is_public_address) -> PinnedTarget:
    """Check the URL's scheme and address; pin the connection to the checked address.

    Raises ``AddressRefused``. With ``allow_private`` the URL is used as written.
    """
    if url.scheme not in ("http", "https"):
        raise AddressRefused("only http and https URLs are allowed")
    host = url.raw_host.decode("ascii")
    if not host:
        raise AddressRefused("URL has no host")
    if allow_private:
        return PinnedTarget(url, dict(headers))
    address = await checked_address(url, host, resolver, policy)
    pinned_headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {}
    if url.scheme == "https" and parse_ip(host) is None:
        # TLS SNI and certificate verification use the name, not the pinned address.
        extensions["sni_hostname"] = host
    return PinnedTarget(url.copy_with(host=str(address)), pinned_headers, extensions)


async def checked_address(url: httpx.URL, host: str, resolver: Resolver,
                          policy: AddressPolicy) -> IPAddress:
    """The address to connect to; refuses the host if any of its addresses is not allowed."""
    literal = parse_ip(host)
    if literal is not None:
        if not policy(literal):
            raise AddressRefused(f"address {shown(literal)} is not public")
        return literal
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"could not resolve host {host}") from exc
    addresses = [parse_ip(answer) for answer in answers]
    valid = [address for address in addresses if address is not None]
    if not valid or len(valid) != len(addresses):
        raise AddressRefused(f"could not resolve host {host}")
    for address in valid:
        if not policy(address):
            raise AddressRefused(f"address {shown(address)} of host {host} is not public")
    return valid[0]

"""Which addresses may be reached and how a URL is pinned (net/netguard.py), without a network."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import httpx
import pytest

from imagegate.net import netguard
from imagegate.net.netguard import (
    AddressRefused,
    Guard,
    NotPublic,
    PinnedTarget,
    ResolveTimeout,
    UnresolvedHost,
    is_public_address,
    without_userinfo,
)

PUBLIC_V4 = "93.184.216.34"


class FakeResolver:
    """Answers every name with fixed addresses (after ``delay`` seconds) and remembers what it
    was asked."""

    def __init__(self, *addresses: str, error: OSError | None = None,
                 delay: float = 0.0) -> None:
        self.addresses = list(addresses)
        self.error = error
        self.delay = delay
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.addresses


def pin(guard: Guard, url: str) -> PinnedTarget:
    return asyncio.run(guard.pin(httpx.URL(url), {"Accept": "image/*"}))


def refusal(guard: Guard, url: str) -> AddressRefused:
    with pytest.raises(AddressRefused) as caught:
        pin(guard, url)
    return caught.value


def test_the_module_declares_what_it_offers() -> None:
    assert all(hasattr(netguard, name) for name in netguard.__all__)
    assert {"Guard", "AddressRefused", "NotPublic", "UnresolvedHost", "ResolveTimeout",
            "is_public_address", "resolve_host"} <= set(netguard.__all__)


# --- the address classification ---------------------------------------------------------------

NOT_PUBLIC = [
    # IPv4 special-purpose ranges
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.255.254", "169.254.0.1", "169.254.169.254", "172.16.0.1",
    "172.31.255.255", "192.0.0.8", "192.0.0.170", "192.0.2.1", "192.88.99.1", "192.168.0.1",
    "192.168.255.255", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6 special-purpose ranges
    "::", "::1", "::127.0.0.1", "::8.8.8.8", "100::1", "2001::1", "2001:db8::1", "fc00::1",
    "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "ff02::1", "ff0e::1", "64:ff9b:1::1",
    # IPv6 forms carrying a non-public IPv4 address
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::",
]
PUBLIC = [
    "1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.15.255.255",
    "172.32.0.1", "192.0.1.1", "192.169.0.1", "198.20.0.1", "223.255.255.254",
    "2606:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_classified_so(address: str) -> None:
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_classified_so(address: str) -> None:
    assert is_public_address(ip_address(address))


# --- Guard.pin --------------------------------------------------------------------------------

def test_a_name_is_looked_up_on_the_schemes_default_port() -> None:
    resolver = FakeResolver(PUBLIC_V4)
    pin(Guard(resolver=resolver), "https://hooks.example.com/x")
    pin(Guard(resolver=resolver), "http://hooks.example.com/x")
    assert resolver.calls == [("hooks.example.com", 443), ("hooks.example.com", 80)]


def test_a_name_is_looked_up_on_an_explicit_port() -> None:
    resolver = FakeResolver(PUBLIC_V4)
    pin(Guard(resolver=resolver), "https://hooks.example.com:8443/x")
    assert resolver.calls == [("hooks.example.com", 8443)]


def test_the_pinned_target_keeps_the_name_for_host_and_sni() -> None:
    target = pin(Guard(resolver=FakeResolver(PUBLIC_V4)), "https://hooks.example.com:8443/x?y=1")
    assert str(target.url) == f"https://{PUBLIC_V4}:8443/x?y=1"
    assert target.headers == {"Accept": "image/*", "Host": "hooks.example.com:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}


def test_an_address_literal_is_not_looked_up_and_needs_no_sni() -> None:
    resolver = FakeResolver()
    target = pin(Guard(resolver=resolver), f"https://{PUBLIC_V4}/x")
    assert resolver.calls == []
    assert target.extensions == {}


def test_allow_private_uses_the_url_as_written_without_a_lookup() -> None:
    resolver = FakeResolver("10.0.0.7")
    target = pin(Guard(allow_private=True, resolver=resolver), "https://internal.example/x")
    assert str(target.url) == "https://internal.example/x"
    assert target.headers == {"Accept": "image/*"}
    assert resolver.calls == []


def test_allow_private_still_refuses_other_schemes() -> None:
    error = refusal(Guard(allow_private=True), "ftp://internal.example/x")
    assert str(error) == "only http and https URLs are allowed"


def test_a_lookup_slower_than_the_guard_allows_is_a_resolve_timeout() -> None:
    guard = Guard(resolver=FakeResolver(PUBLIC_V4, delay=5), resolve_timeout_s=0.05)
    error = refusal(guard, "https://slow.example/x")
    assert isinstance(error, ResolveTimeout)
    assert str(error) == "resolving host slow.example took more than 0.05 s"


def test_a_resolver_timing_out_by_itself_is_an_unresolved_host() -> None:
    error = refusal(Guard(resolver=FakeResolver(error=TimeoutError())), "https://a.example/x")
    assert type(error) is UnresolvedHost
    assert str(error) == "could not resolve host a.example"


@pytest.mark.parametrize("answers", [(), ("not an address",), (PUBLIC_V4, "garbage")])
def test_an_answer_that_is_not_a_list_of_addresses_is_an_unresolved_host(
        answers: tuple[str, ...]) -> None:
    error = refusal(Guard(resolver=FakeResolver(*answers)), "https://a.example/x")
    assert type(error) is UnresolvedHost


# --- what a refusal tells, and to whom ---------------------------------------------------------

def test_a_refused_name_does_not_tell_what_it_resolves_to() -> None:
    error = refusal(Guard(resolver=FakeResolver(PUBLIC_V4, "10.0.0.7")), "https://a.example/x")
    assert isinstance(error, NotPublic)
    assert str(error) == "the host is not a public address"
    assert error.detail == "address 10.0.0.7 of host a.example is not public"  # for the log


def test_a_refused_literal_names_the_address_the_url_shows() -> None:
    error = refusal(Guard(), "https://[::ffff:127.0.0.1]:8443/x")
    assert isinstance(error, NotPublic)
    assert str(error) == error.detail == "address ::ffff:127.0.0.1 is not public"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:secret@hooks.example/x", "https://hooks.example/x"),
    ("http://token@hooks.example:8080/x?a=b@c", "http://hooks.example:8080/x?a=b@c"),
    ("HTTPS://a@b:c@hooks.example/x", "HTTPS://hooks.example/x"),
    ("//user:pw@hooks.example/x", "//hooks.example/x"),
    ("https://hooks.example/x@y", "https://hooks.example/x@y"),
    ("data:image/png;base64,AA@A", "data:image/png;base64,AA@A"),
    ("not a url @ all", "not a url @ all"),
])
def test_urls_are_shown_without_userinfo(url: str, shown: str) -> None:
    assert without_userinfo(url) == shown

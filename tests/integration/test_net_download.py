"""The guarded download (net/download.py) against a real HTTP server on loopback: every guard that
reference images, relay results and callbacks rely on, tested once, here.

Names like ``images.example.test`` never reach real DNS: a fake resolver maps them. Tests that
need the loopback server to count as "the public internet" pass ``loopback_counts_as_public`` as
the address policy; everything else about the policy is the production one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.web_server import WebServer, fake_resolver, loopback_counts_as_public, web_server

from imagegate.net import download as download_module
from imagegate.net.download import (
    BadRedirect,
    BadStatus,
    DownloadError,
    Refused,
    TooLarge,
    TooManyRedirects,
    TransportFailed,
    download,
    open_pinned,
    transport_reason,
)
from imagegate.net.netguard import (
    Guard,
    NotPublic,
    UnresolvedHost,
)

KB = 1024
BODY = b"\x89PNG not really, but bytes"
OPEN = Guard(allow_private=True)  # the loopback server is reachable as written
GUARDED = Guard()  # the production policy and the system resolver


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server({"/good.png": (BODY, "image/png"),
                     "/big.png": (BODY + bytes(64 * KB), "image/png")}) as web:
        yield web


def get(url: str, guard: Guard = OPEN, *, client: httpx.AsyncClient | None = None,
        **options: Any) -> bytes:
    async def go() -> bytes:
        async with client or httpx.AsyncClient(trust_env=False) as http:
            return await download(http, httpx.URL(url), guard,
                                  **{"max_bytes": 20 * KB * KB, **options})
    return asyncio.run(go())


def failure(url: str, guard: Guard = OPEN, **options: Any) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        get(url, guard, **options)
    return caught.value


def refusal(url: str, guard: Guard, **options: Any) -> Refused:
    error = failure(url, guard, **options)
    assert isinstance(error, Refused)
    return error


def recording_client(requests: list[httpx.Request], answer: httpx.Response,
                     **options: Any) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer
    return httpx.AsyncClient(transport=httpx.MockTransport(handle), **options)


# --- the public surface -----------------------------------------------------------------------

def test_the_module_declares_what_it_offers() -> None:
    assert sorted(download_module.__all__) == [
        "BadRedirect", "BadStatus", "DownloadError", "Refused", "TooLarge", "TooManyRedirects",
        "TransportFailed", "download", "open_pinned", "size_text", "transport_reason"]
    assert all(hasattr(download_module, name) for name in download_module.__all__)


# --- answers ----------------------------------------------------------------------------------

def test_a_success_gives_the_body(server: WebServer) -> None:
    assert get(server.url("/good.png")) == BODY


def test_an_error_status_names_itself(server: WebServer) -> None:
    error = failure(server.url("/missing.png"))
    assert isinstance(error, BadStatus)
    assert (error.status, error.reason, error.hop) == (404, "HTTP 404", 0)
    assert error.url == httpx.URL(server.url("/missing.png"))


def test_a_server_that_is_not_there_is_a_transport_failure(server: WebServer) -> None:
    error = failure("http://127.0.0.1:9/x.png")
    assert isinstance(error, TransportFailed) and not error.timed_out
    assert error.reason.startswith("could not connect") and "Errno" not in error.reason


@pytest.mark.parametrize("exc,reason", [
    (httpx.ConnectError("[Errno -2] Name or service not known"),
     "could not connect: Name or service not known"),
    (httpx.ConnectError(""), "could not connect"),
    (httpx.ReadTimeout("timed out"), "timed out waiting for the server"),
    (httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
     "the server broke off the answer"),
    (httpx.ReadError("[Errno 104] Connection reset by peer"), "network error: Connection reset "
     "by peer"),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "")
def test_a_transport_failure_is_told_in_a_sentence(exc: Exception, reason: str) -> None:
    assert transport_reason(exc) == reason


# --- size limits ------------------------------------------------------------------------------

def test_body_over_limit_is_refused_by_content_length(server: WebServer) -> None:
    error = failure(server.url("/big.png"), max_bytes=32 * KB)
    assert isinstance(error, TooLarge) and error.limit == 32 * KB
    assert error.reason == "larger than the 32 KB limit"


def test_streamed_body_over_limit_is_cut_off(server: WebServer) -> None:
    error = failure(server.url("/big-chunked"), max_bytes=32 * KB)
    assert isinstance(error, TooLarge)
    assert error.reason == "larger than the 32 KB limit"


def test_a_body_exactly_at_the_limit_is_read(server: WebServer) -> None:
    assert get(server.url("/good.png"), max_bytes=len(BODY)) == BODY


# --- redirects --------------------------------------------------------------------------------

def test_follows_one_redirect(server: WebServer) -> None:
    assert get(server.url("/redirect/0")) == BODY


def test_follows_three_redirects(server: WebServer) -> None:
    assert get(server.url("/redirect/2")) == BODY


def test_fourth_redirect_is_refused(server: WebServer) -> None:
    error = failure(server.url("/redirect/3"))
    assert isinstance(error, TooManyRedirects)
    assert error.reason == "redirected more than 3 times"
    assert (error.url, error.hop) == (httpx.URL(server.url("/redirect/3")), 0)


def test_redirect_limit_holds_even_if_the_client_would_follow_redirects(
        server: WebServer) -> None:
    client = httpx.AsyncClient(trust_env=False, follow_redirects=True)
    error = failure(server.url("/redirect/1"), client=client, max_redirects=1)
    assert error.reason == "redirected more than 1 times"


def test_no_redirect_is_followed_with_a_limit_of_none(server: WebServer) -> None:
    assert failure(server.url("/redirect/0"), max_redirects=0).reason == (
        "redirected more than 0 times")


def test_relative_location_is_resolved_against_the_current_url(server: WebServer) -> None:
    assert get(server.url("/a/relative")) == BODY


def test_failure_after_a_redirect_names_the_hop(server: WebServer) -> None:
    error = failure(server.url("/to-missing"))
    assert isinstance(error, BadStatus)
    assert (error.url, error.hop, error.reason) == (
        httpx.URL(server.url("/nothing-here")), 1, "HTTP 404")


def test_redirect_without_location_is_refused(server: WebServer) -> None:
    error = failure(server.url("/no-location"))
    assert isinstance(error, BadRedirect)
    assert error.reason == "HTTP 302 redirect without a Location"


def test_redirect_to_another_scheme_is_refused(server: WebServer) -> None:
    error = refusal(server.url("/to-file"), OPEN)
    assert error.reason == "only http and https URLs are allowed"
    assert (error.url.scheme, error.hop) == ("file", 1)


# --- address policy over the network ----------------------------------------------------------

def test_loopback_url_is_refused_by_default(server: WebServer) -> None:
    error = refusal(server.url("/good.png"), GUARDED)
    assert isinstance(error.refusal, NotPublic)
    assert error.reason == "address 127.0.0.1 is not public"


@pytest.mark.parametrize("address", [
    "10.1.2.3", "192.168.1.1", "172.16.0.1", "172.31.255.254", "169.254.169.254", "127.0.0.1",
    "0.0.0.0", "100.64.0.1", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fd00::1",
    "64:ff9b::a00:1", "2002:c0a8:101::1",
])
def test_host_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    guard = Guard(resolver=fake_resolver({"images.example.test": [address]}))
    error = refusal("http://images.example.test/a.png", guard)
    assert error.reason == "the host is not a public address"  # what it resolves to is ours
    assert isinstance(error.refusal, NotPublic)
    assert error.refusal.detail == f"address {address} of host images.example.test is not public"


def test_host_is_refused_if_any_of_its_addresses_is_not_public() -> None:
    guard = Guard(resolver=fake_resolver({"images.example.test": ["93.184.216.34", "10.0.0.7"]}))
    error = refusal("https://images.example.test/a.png", guard)
    assert error.reason == "the host is not a public address"
    assert "10.0.0.7" not in error.reason
    assert isinstance(error.refusal, NotPublic) and "10.0.0.7" in error.refusal.detail


@pytest.mark.parametrize(("host", "address"), [
    ("[::1]", "::1"), ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("10.0.0.1", "10.0.0.1"),
    ("169.254.169.254", "169.254.169.254"), ("[fe80::1]", "fe80::1"),
])
def test_ip_literal_hosts_are_checked_too(host: str, address: str) -> None:
    error = refusal(f"http://{host}/latest/meta-data/", Guard(resolver=fake_resolver({})))
    assert error.reason == f"address {address} is not public"


def test_unresolvable_host_is_refused() -> None:
    error = refusal("http://nowhere.example.test/a.png", Guard(resolver=fake_resolver({})))
    assert isinstance(error.refusal, UnresolvedHost)
    assert error.reason == "could not resolve host nowhere.example.test"


def test_a_refused_hop_makes_no_request() -> None:
    requests: list[httpx.Request] = []
    client = recording_client(requests, httpx.Response(200, content=BODY))
    guard = Guard(resolver=fake_resolver({"images.example.test": ["10.0.0.7"]}))
    refusal("http://images.example.test/a.png", guard, client=client)
    assert requests == []


def test_connection_is_pinned_to_the_checked_address(server: WebServer) -> None:
    # The name exists only in the fake resolver, so the request can only have reached the
    # server through the checked address, with the name in the Host header.
    guard = Guard(resolver=fake_resolver({"images.example.test": ["127.0.0.1"]}),
                  policy=loopback_counts_as_public)
    assert get(server.url("/good.png", host="images.example.test"), guard) == BODY
    assert f"images.example.test:{server.port}" in server.hosts_seen


def test_redirect_hops_are_resolved_and_pinned_too(server: WebServer) -> None:
    guard = Guard(resolver=fake_resolver({"images.example.test": ["127.0.0.1"]}),
                  policy=loopback_counts_as_public)
    assert get(server.url("/to-named"), guard) == BODY


@pytest.mark.parametrize(("path", "address"), [
    ("/to-private", "10.0.0.1"), ("/to-metadata", "169.254.169.254"),
])
def test_redirect_into_private_space_is_refused(server: WebServer, path: str,
                                                address: str) -> None:
    error = refusal(server.url(path), Guard(policy=loopback_counts_as_public))
    assert error.reason == f"address {address} is not public"
    assert error.hop == 1 and str(error.url).startswith("http://")


def test_redirect_to_a_host_resolving_privately_is_refused(server: WebServer) -> None:
    guard = Guard(resolver=fake_resolver({"images.example.test": ["192.168.0.10"]}),
                  policy=loopback_counts_as_public)
    error = refusal(server.url("/to-named"), guard)
    assert error.reason == "the host is not a public address"
    assert error.hop == 1


def test_https_request_goes_to_the_address_with_name_for_sni_and_host() -> None:
    seen: list[httpx.Request] = []
    client = recording_client(seen, httpx.Response(200, content=BODY))
    guard = Guard(resolver=fake_resolver({"cdn.example.test": ["2606:4700::1111",
                                                               "93.184.216.34"]}))
    get("https://cdn.example.test:8443/a.png?v=1", guard, client=client)
    (request,) = seen
    assert str(request.url) == "https://[2606:4700::1111]:8443/a.png?v=1"
    assert request.headers["Host"] == "cdn.example.test:8443"
    assert request.extensions["sni_hostname"] == "cdn.example.test"


def test_default_port_is_left_out_of_the_host_header() -> None:
    seen: list[httpx.Request] = []
    client = recording_client(seen, httpx.Response(200, content=BODY))
    guard = Guard(resolver=fake_resolver({"cdn.example.test": ["93.184.216.34"]}))
    get("https://cdn.example.test/a.png", guard, client=client)
    assert seen[0].headers["Host"] == "cdn.example.test"
    assert seen[0].url.host == "93.184.216.34"


def test_public_host_passes_the_policy() -> None:
    seen: list[httpx.Request] = []
    client = recording_client(seen, httpx.Response(200, content=BODY))
    guard = Guard(resolver=fake_resolver({"images.example.test": ["93.184.216.34"]}))
    assert get("http://images.example.test/p.jpg", guard, client=client) == BODY


def test_private_addresses_allowed_are_fetched_as_written() -> None:
    seen: list[httpx.Request] = []
    client = recording_client(seen, httpx.Response(200, content=BODY))
    get("http://10.0.0.7:8000/r.png", Guard(allow_private=True, resolver=fake_resolver({})),
        client=client)
    assert [str(r.url) for r in seen] == ["http://10.0.0.7:8000/r.png"]
    assert "sni_hostname" not in seen[0].extensions


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "a.png"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    assert refusal(url, GUARDED).reason == "only http and https URLs are allowed"
    assert refusal(url, OPEN).reason == "only http and https URLs are allowed"


# --- one pinned request -----------------------------------------------------------------------

def test_open_pinned_sends_one_request_and_never_follows_a_redirect() -> None:
    seen: list[httpx.Request] = []
    moved = httpx.Response(307, headers={"Location": "https://elsewhere.example.test/"})
    client = recording_client(seen, moved, follow_redirects=True)
    guard = Guard(resolver=fake_resolver({"hooks.example.test": ["93.184.216.34"]}))

    async def go() -> int:
        target = await guard.pin(httpx.URL("https://hooks.example.test/in"), {"a": "1"})
        async with client, open_pinned(client, "POST", target, headers={"b": "2"},
                                       content=b"{}") as response:
            return response.status_code

    assert asyncio.run(go()) == 307
    (request,) = seen
    assert (request.method, str(request.url), request.content) == (
        "POST", "https://93.184.216.34/in", b"{}")
    assert (request.headers["Host"], request.headers["a"], request.headers["b"]) == (
        "hooks.example.test", "1", "2")
    assert request.extensions["sni_hostname"] == "hooks.example.test"

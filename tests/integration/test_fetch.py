"""ReferenceFetcher against a real HTTP server on loopback (CONTRACT.md §10).

Names like ``images.example.test`` never reach real DNS: a fake resolver maps them. Tests that
need the loopback server to count as "the public internet" pass ``loopback_counts_as_public`` as
the address policy; everything else about the policy is the production one.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

from imagegate.errors import FailCode, ReferenceImageError
from imagegate.fetch import FetchedImage, FetchLimits, ReferenceFetcher
from imagegate.net.netguard import IPAddress, Resolver, is_public_address

T = TypeVar("T")

KB = 1024
PERMISSIVE = FetchLimits(allow_private=True)


# --- fixture images ---------------------------------------------------------------------------

def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: a few KB that would decode to ~side² bytes."""
    row = b"\x00" + bytes((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _animated_gif() -> bytes:
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    return _encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)


PNG = _encode(Image.new("RGBA", (16, 12), (0, 128, 255, 200)), "PNG")
JPEG = _encode(Image.new("RGB", (20, 10), "green"), "JPEG")
WEBP = _encode(Image.new("RGB", (10, 10), "yellow"), "WEBP")
GIF = _animated_gif()
BOMB = _bomb_png(10_000)  # 100 megapixels, over the 64 MP default


# --- the loopback server ----------------------------------------------------------------------

@dataclass
class Server:
    port: int
    hosts_seen: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.hosts_seen.append(self.headers.get("Host", ""))
        path = self.path.split("?")[0]
        static = {"/good.png": (PNG, "image/png"), "/photo.jpg": (JPEG, "image/jpeg"),
                  "/pic.webp": (WEBP, "image/webp"), "/anim.gif": (GIF, "image/gif"),
                  "/bomb.png": (BOMB, "image/png"),
                  "/page.html": (b"<html><body>hi</body></html>", "text/html"),
                  "/big.png": (PNG + bytes(64 * KB), "image/png")}
        if path in static:
            self._send(200, *static[path])
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect("/good.png" if left == 0 else f"/redirect/{left - 1}")
        elif path in REDIRECTS:
            self._redirect(REDIRECTS[path].format(port=state.port))
        elif path == "/big-chunked":
            self._chunked(bytes(16 * KB) for _ in range(64))
        elif path == "/trickle":
            self._chunked(self._slowly(b"x", 100, 0.05))
        elif path == "/slowish.png":
            self._slowish()
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunked(self, chunks: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _slowly(piece: bytes, count: int, delay: float) -> Iterator[bytes]:
        for _ in range(count):
            time.sleep(delay)
            yield piece

    def _slowish(self) -> None:
        state = self.server.state
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        time.sleep(0.15)
        with state.lock:
            state.in_flight -= 1
        self._send(200, PNG, "image/png")


REDIRECTS = {
    "/a/relative": "../good.png",
    "/to-private": "http://10.0.0.1/x.png",
    "/to-metadata": "http://169.254.169.254/latest/meta-data/",
    "/to-file": "file:///etc/passwd",
    "/to-named": "http://images.example.test:{port}/good.png",
    "/to-missing": "/nothing-here",
    "/no-location": "",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: Server

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (size limits, timeouts); that is not a server bug


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.state = Server(port=httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# --- helpers ----------------------------------------------------------------------------------

def fake_resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]
    return resolve


def loopback_counts_as_public(ip: IPAddress) -> bool:
    """Test policy: the loopback server stands in for the public internet."""
    return ip.is_loopback or is_public_address(ip)


def run_with(work: Callable[[ReferenceFetcher], Awaitable[T]], limits: FetchLimits = PERMISSIVE,
             *, client: httpx.AsyncClient | None = None, **options: Any) -> T:
    async def go() -> T:
        async with client or httpx.AsyncClient(trust_env=False) as http:
            return await work(ReferenceFetcher(http, limits, **options))
    return asyncio.run(go())


def fetch(url: str, limits: FetchLimits = PERMISSIVE, **options: Any) -> FetchedImage:
    return run_with(lambda fetcher: fetcher.fetch(url), limits, **options)


def refusal(url: str, limits: FetchLimits = PERMISSIVE, **options: Any) -> ReferenceImageError:
    with pytest.raises(ReferenceImageError) as caught:
        fetch(url, limits, **options)
    error = caught.value
    assert error.url == url
    assert error.fail_code == FailCode.IMAGE_FORMAT_INCORRECT
    return error


# --- formats ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "fmt", "size", "mode"), [
    ("/good.png", "PNG", (16, 12), "RGBA"),
    ("/photo.jpg", "JPEG", (20, 10), "RGB"),
    ("/pic.webp", "WEBP", (10, 10), "RGB"),
])
def test_fetches_and_decodes_each_format(server: Server, path: str, fmt: str,
                                         size: tuple[int, int], mode: str) -> None:
    got = fetch(server.url(path))
    assert (got.format, got.image.size, got.image.mode) == (fmt, size, mode)
    assert got.url == server.url(path)
    assert got.size_bytes > 0


def test_animated_gif_gives_its_first_frame(server: Server) -> None:
    got = fetch(server.url("/anim.gif"))
    assert got.format == "GIF"
    assert got.image.convert("RGB").getpixel((4, 4)) == (255, 0, 0)
    assert got.size_bytes == len(GIF)


def test_not_found_names_the_status(server: Server) -> None:
    assert refusal(server.url("/missing.png")).reason == "HTTP 404"


def test_html_page_is_not_an_image(server: Server) -> None:
    assert refusal(server.url("/page.html")).reason == "not an image in a supported format"


def test_decompression_bomb_is_refused_from_its_header(server: Server) -> None:
    error = refusal(server.url("/bomb.png"))
    assert error.reason == "image is 10000x10000 pixels, more than the limit of 64000000"


def test_pixel_limit_is_configurable(server: Server) -> None:
    limits = FetchLimits(allow_private=True, max_pixels=100)
    assert "16x12 pixels, more than the limit of 100" in refusal(server.url("/good.png"),
                                                                 limits).reason


# --- size limits ------------------------------------------------------------------------------

def test_body_over_limit_is_refused_by_content_length(server: Server) -> None:
    limits = FetchLimits(allow_private=True, max_bytes=32 * KB)
    assert refusal(server.url("/big.png"), limits).reason == "larger than the 32 KB limit"


def test_streamed_body_over_limit_is_cut_off(server: Server) -> None:
    limits = FetchLimits(allow_private=True, max_bytes=32 * KB)
    assert refusal(server.url("/big-chunked"), limits).reason == "larger than the 32 KB limit"


def test_size_limit_message_uses_megabytes() -> None:
    limits = FetchLimits(max_bytes=1024 * 1024)
    url = "data:image/png;base64," + base64.b64encode(bytes(1024 * 1024 + 1)).decode()
    assert refusal(url, limits).reason == "larger than the 1 MB limit"


# --- time limit -------------------------------------------------------------------------------

def test_whole_fetch_is_bounded_even_while_bytes_keep_arriving(server: Server) -> None:
    limits = FetchLimits(allow_private=True, timeout_s=0.3)
    assert refusal(server.url("/trickle"), limits).reason == "timed out after 0.3 s"


# --- redirects --------------------------------------------------------------------------------

def test_follows_one_redirect(server: Server) -> None:
    assert fetch(server.url("/redirect/0")).format == "PNG"


def test_follows_three_redirects(server: Server) -> None:
    assert fetch(server.url("/redirect/2")).format == "PNG"


def test_fourth_redirect_is_refused(server: Server) -> None:
    assert refusal(server.url("/redirect/3")).reason == "redirected more than 3 times"


def test_redirect_limit_holds_even_if_the_client_would_follow_redirects(server: Server) -> None:
    client = httpx.AsyncClient(trust_env=False, follow_redirects=True)
    error = refusal(server.url("/redirect/1"), FetchLimits(allow_private=True, max_redirects=1),
                    client=client)
    assert error.reason == "redirected more than 1 times"


def test_relative_location_is_resolved_against_the_current_url(server: Server) -> None:
    assert fetch(server.url("/a/relative")).format == "PNG"


def test_failure_after_a_redirect_names_the_hop(server: Server) -> None:
    error = refusal(server.url("/to-missing"))
    assert error.reason == f"after redirect to {server.url('/nothing-here')}: HTTP 404"


def test_redirect_without_location_is_refused(server: Server) -> None:
    assert refusal(server.url("/no-location")).reason == "HTTP 302 redirect without a Location"


def test_redirect_to_another_scheme_is_refused(server: Server) -> None:
    error = refusal(server.url("/to-file"))
    assert error.reason.endswith("only http and https URLs are allowed")


# --- address policy over the network ----------------------------------------------------------

def test_loopback_url_is_refused_by_default(server: Server) -> None:
    error = refusal(server.url("/good.png"), FetchLimits())
    assert error.reason == "address 127.0.0.1 is not public"
    assert str(error) == f"ImageFormatIncorrect: reference image {server.url('/good.png')}: " \
                         "address 127.0.0.1 is not public"


@pytest.mark.parametrize("address", [
    "10.1.2.3", "192.168.1.1", "172.16.0.1", "172.31.255.254", "169.254.169.254", "127.0.0.1",
    "0.0.0.0", "100.64.0.1", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fd00::1",
    "64:ff9b::a00:1", "2002:c0a8:101::1",
])
def test_host_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    resolver = fake_resolver({"images.example.test": [address]})
    error = refusal("http://images.example.test/a.png", FetchLimits(), resolver=resolver)
    assert error.reason == f"address {address} of host images.example.test is not public"


def test_host_is_refused_if_any_of_its_addresses_is_not_public() -> None:
    resolver = fake_resolver({"images.example.test": ["93.184.216.34", "10.0.0.7"]})
    error = refusal("https://images.example.test/a.png", FetchLimits(), resolver=resolver)
    assert "10.0.0.7" in error.reason


@pytest.mark.parametrize(("host", "address"), [
    ("[::1]", "::1"), ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("10.0.0.1", "10.0.0.1"),
    ("169.254.169.254", "169.254.169.254"), ("[fe80::1]", "fe80::1"),
])
def test_ip_literal_hosts_are_checked_too(host: str, address: str) -> None:
    error = refusal(f"http://{host}/latest/meta-data/", FetchLimits(),
                    resolver=fake_resolver({}))
    assert error.reason == f"address {address} is not public"


def test_unresolvable_host_is_refused() -> None:
    error = refusal("http://nowhere.example.test/a.png", FetchLimits(), resolver=fake_resolver({}))
    assert error.reason == "could not resolve host nowhere.example.test"


def test_connection_is_pinned_to_the_checked_address(server: Server) -> None:
    # The name exists only in the fake resolver, so the request can only have reached the
    # server through the checked address, with the name in the Host header.
    resolver = fake_resolver({"images.example.test": ["127.0.0.1"]})
    url = server.url("/good.png", host="images.example.test")
    got = fetch(url, FetchLimits(), resolver=resolver, policy=loopback_counts_as_public)
    assert got.format == "PNG"
    assert f"images.example.test:{server.port}" in server.hosts_seen


def test_redirect_hops_are_resolved_and_pinned_too(server: Server) -> None:
    resolver = fake_resolver({"images.example.test": ["127.0.0.1"]})
    got = fetch(server.url("/to-named"), FetchLimits(), resolver=resolver,
                policy=loopback_counts_as_public)
    assert got.format == "PNG"


@pytest.mark.parametrize(("path", "address"), [
    ("/to-private", "10.0.0.1"), ("/to-metadata", "169.254.169.254"),
])
def test_redirect_into_private_space_is_refused(server: Server, path: str, address: str) -> None:
    error = refusal(server.url(path), FetchLimits(), policy=loopback_counts_as_public)
    assert error.reason.endswith(f"address {address} is not public")
    assert error.reason.startswith("after redirect to http://")


def test_redirect_to_a_host_resolving_privately_is_refused(server: Server) -> None:
    resolver = fake_resolver({"images.example.test": ["192.168.0.10"]})
    error = refusal(server.url("/to-named"), FetchLimits(), resolver=resolver,
                    policy=loopback_counts_as_public)
    assert error.reason.endswith("address 192.168.0.10 of host images.example.test is not public")


def test_https_request_goes_to_the_address_with_name_for_sni_and_host() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    resolver = fake_resolver({"cdn.example.test": ["2606:4700::1111", "93.184.216.34"]})
    fetch("https://cdn.example.test:8443/a.png?v=1", FetchLimits(), resolver=resolver,
          client=client)
    (request,) = seen
    assert str(request.url) == "https://[2606:4700::1111]:8443/a.png?v=1"
    assert request.headers["Host"] == "cdn.example.test:8443"
    assert request.extensions["sni_hostname"] == "cdn.example.test"


def test_default_port_is_left_out_of_the_host_header() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    resolver = fake_resolver({"cdn.example.test": ["93.184.216.34"]})
    fetch("https://cdn.example.test/a.png", FetchLimits(), resolver=resolver, client=client)
    assert seen[0].headers["Host"] == "cdn.example.test"
    assert seen[0].url.host == "93.184.216.34"


# --- URLs and data URIs -----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "a.png"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    assert refusal(url, FetchLimits()).reason == "only http and https URLs are allowed"


def test_data_uri_is_decoded_without_network() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    got = fetch(url, FetchLimits(), resolver=fake_resolver({}))
    assert (got.format, got.image.size, got.size_bytes) == ("PNG", (16, 12), len(PNG))


@pytest.mark.parametrize(("url", "reason"), [
    ("data:image/png;base64,@@@not base64@@@", "data URI is not valid base64"),
    ("data:image/png;base64,iVBORw0KGgo", "data URI is not valid base64"),
    ("data:image/png,rawbytes", "data URI is not base64-encoded"),
    ("data:text/plain;base64,aGVsbG8=", "data URI is not an image (data:image/...;base64,...)"),
    ("data:image/png;base64", "data URI is not an image (data:image/...;base64,...)"),
    ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not an image in a supported format"),
])
def test_bad_data_uris_are_refused(url: str, reason: str) -> None:
    assert refusal(url, FetchLimits()).reason == reason


def test_oversize_data_uri_is_refused_before_decoding() -> None:
    url = "data:image/png;base64," + base64.b64encode(bytes(10 * KB)).decode()
    assert refusal(url, FetchLimits(max_bytes=KB)).reason == "larger than the 1 KB limit"


# --- fetch_all --------------------------------------------------------------------------------

def test_fetch_all_keeps_input_order(server: Server) -> None:
    urls = [server.url(p) for p in ("/pic.webp", "/good.png", "/anim.gif", "/photo.jpg")]
    got = run_with(lambda fetcher: fetcher.fetch_all(urls))
    assert [image.format for image in got] == ["WEBP", "PNG", "GIF", "JPEG"]
    assert [image.url for image in got] == urls


def test_fetch_all_runs_a_bounded_number_at_once(server: Server) -> None:
    server.max_in_flight = 0
    urls = [server.url(f"/slowish.png?n={n}") for n in range(8)]
    got = run_with(lambda fetcher: fetcher.fetch_all(urls), concurrency=3)
    assert len(got) == 8
    assert 1 < server.max_in_flight <= 3


def test_fetch_all_raises_the_first_failure_and_stops_the_rest(server: Server) -> None:
    urls = [server.url("/trickle"), server.url("/missing.png"), server.url("/good.png")]
    with pytest.raises(ReferenceImageError) as caught:
        run_with(lambda fetcher: fetcher.fetch_all(urls), FetchLimits(allow_private=True,
                                                                       timeout_s=30))
    assert (caught.value.url, caught.value.reason) == (urls[1], "HTTP 404")


def test_fetch_all_of_nothing_is_empty() -> None:
    assert run_with(lambda fetcher: fetcher.fetch_all([])) == []


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


def test_public_host_passes_the_policy_without_connecting() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=JPEG)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    resolver = fake_resolver({"images.example.test": ["93.184.216.34"]})
    got = fetch("http://images.example.test/p.jpg", FetchLimits(), resolver=resolver,
                client=client)
    assert got.format == "JPEG"

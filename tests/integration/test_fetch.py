"""ReferenceFetcher against a real HTTP server on loopback (docs/contract.md §10).

The guard itself (addresses, pinning, redirects, the size cap) is tested once, against
``net.download``, in test_net_download.py and tests/unit/test_netguard.py. Here: what fetching
adds (decoding, data URIs, the whole-fetch deadline, concurrency) and that each guard's refusal
reaches the task as ``ImageFormatIncorrect`` with a failMsg naming the URL and the reason.

Names like ``images.example.test`` never reach real DNS: a fake resolver maps them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from fakes.web_server import WebServer, fake_resolver, loopback_counts_as_public, web_server
from PIL import Image

from imagegate.errors import FailCode, ReferenceImageError
from imagegate.fetch import PRIVATE_HINT, FetchedImage, FetchLimits, ReferenceFetcher

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

FILES = {"/good.png": (PNG, "image/png"), "/photo.jpg": (JPEG, "image/jpeg"),
         "/pic.webp": (WEBP, "image/webp"), "/anim.gif": (GIF, "image/gif"),
         "/bomb.png": (BOMB, "image/png"),
         "/page.html": (b"<html><body>hi</body></html>", "text/html")}


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with web_server(FILES) as web:
        yield web


# --- helpers ----------------------------------------------------------------------------------

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
def test_fetches_and_decodes_each_format(server: WebServer, path: str, fmt: str,
                                         size: tuple[int, int], mode: str) -> None:
    got = fetch(server.url(path))
    assert (got.format, got.image.size, got.image.mode) == (fmt, size, mode)
    assert got.url == server.url(path)
    assert got.size_bytes > 0


def test_animated_gif_gives_its_first_frame(server: WebServer) -> None:
    got = fetch(server.url("/anim.gif"))
    assert got.format == "GIF"
    assert got.image.convert("RGB").getpixel((4, 4)) == (255, 0, 0)
    assert got.size_bytes == len(GIF)


def test_not_found_names_the_status(server: WebServer) -> None:
    assert refusal(server.url("/missing.png")).reason == "HTTP 404"


def test_html_page_is_not_an_image(server: WebServer) -> None:
    assert refusal(server.url("/page.html")).reason == "not an image in a supported format"


def test_decompression_bomb_is_refused_from_its_header(server: WebServer) -> None:
    error = refusal(server.url("/bomb.png"))
    assert error.reason == "image is 10000x10000 pixels, more than the limit of 64000000"


def test_pixel_limit_is_configurable(server: WebServer) -> None:
    limits = FetchLimits(allow_private=True, max_pixels=100)
    assert "16x12 pixels, more than the limit of 100" in refusal(server.url("/good.png"),
                                                                 limits).reason


# --- size limits ------------------------------------------------------------------------------

def test_the_byte_limit_applies_to_downloads(server: WebServer) -> None:
    limits = FetchLimits(allow_private=True, max_bytes=32 * KB)
    assert refusal(server.url("/big-chunked"), limits).reason == "larger than the 32 KB limit"


def test_size_limit_message_uses_megabytes() -> None:
    limits = FetchLimits(max_bytes=1024 * 1024)
    url = "data:image/png;base64," + base64.b64encode(bytes(1024 * 1024 + 1)).decode()
    assert refusal(url, limits).reason == "larger than the 1 MB limit"


# --- time limit -------------------------------------------------------------------------------

def test_whole_fetch_is_bounded_even_while_bytes_keep_arriving(server: WebServer) -> None:
    limits = FetchLimits(allow_private=True, timeout_s=0.3)
    assert refusal(server.url("/trickle"), limits).reason == "timed out after 0.3 s"


# --- redirects --------------------------------------------------------------------------------

def test_follows_redirects(server: WebServer) -> None:
    assert fetch(server.url("/redirect/2")).format == "PNG"


def test_the_redirect_limit_comes_from_the_fetch_limits(server: WebServer) -> None:
    error = refusal(server.url("/redirect/1"), FetchLimits(allow_private=True, max_redirects=1))
    assert error.reason == "redirected more than 1 times"


def test_failure_after_a_redirect_names_the_hop(server: WebServer) -> None:
    error = refusal(server.url("/to-missing"))
    assert error.reason == f"after redirect to {server.url('/nothing-here')}: HTTP 404"


# --- address policy over the network ----------------------------------------------------------

def test_loopback_url_is_refused_by_default(server: WebServer) -> None:
    error = refusal(server.url("/good.png"), FetchLimits())
    assert error.reason == f"address 127.0.0.1 is not public ({PRIVATE_HINT})"
    assert str(error) == f"ImageFormatIncorrect: reference image {server.url('/good.png')}: " \
                         f"address 127.0.0.1 is not public ({PRIVATE_HINT})"


def test_a_name_resolving_privately_is_refused_without_saying_to_what() -> None:
    resolver = fake_resolver({"images.example.test": ["127.0.0.1"]})
    error = refusal("http://images.example.test/a.png", FetchLimits(), resolver=resolver)
    assert str(error) == ("ImageFormatIncorrect: reference image http://images.example.test/a.png: "
                          f"the host is not a public address ({PRIVATE_HINT})")
    assert "127.0.0.1" not in str(error)


def test_credentials_in_a_url_are_not_shown() -> None:
    resolver = fake_resolver({"images.example.test": ["10.0.0.1"]})
    with pytest.raises(ReferenceImageError) as caught:
        fetch("http://user:secret@images.example.test/a.png", FetchLimits(), resolver=resolver)
    assert caught.value.url == "http://images.example.test/a.png"
    assert "secret" not in str(caught.value) and "user" not in str(caught.value)


def test_credentials_in_a_redirect_are_not_shown(server: WebServer) -> None:
    error = refusal(server.url("/to-credentials"))
    assert error.reason == f"after redirect to {server.url('/nothing-here')}: HTTP 404"


def test_the_fetchers_resolver_and_policy_decide(server: WebServer) -> None:
    # The name exists only in the fake resolver, and loopback is public only to the test policy:
    # the fetch can only have succeeded through both.
    resolver = fake_resolver({"images.example.test": ["127.0.0.1"]})
    url = server.url("/good.png", host="images.example.test")
    got = fetch(url, FetchLimits(), resolver=resolver, policy=loopback_counts_as_public)
    assert got.format == "PNG"
    assert f"images.example.test:{server.port}" in server.hosts_seen


# --- URLs and data URIs -----------------------------------------------------------------------

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

def test_fetch_all_keeps_input_order(server: WebServer) -> None:
    urls = [server.url(p) for p in ("/pic.webp", "/good.png", "/anim.gif", "/photo.jpg")]
    got = run_with(lambda fetcher: fetcher.fetch_all(urls))
    assert [image.format for image in got] == ["WEBP", "PNG", "GIF", "JPEG"]
    assert [image.url for image in got] == urls


def test_fetch_all_runs_a_bounded_number_at_once(server: WebServer) -> None:
    server.max_in_flight = 0
    urls = [server.url(f"/slowish.png?n={n}") for n in range(8)]
    got = run_with(lambda fetcher: fetcher.fetch_all(urls), concurrency=3)
    assert len(got) == 8
    assert 1 < server.max_in_flight <= 3


def test_fetch_all_raises_the_first_failure_and_stops_the_rest(server: WebServer) -> None:
    urls = [server.url("/trickle"), server.url("/missing.png"), server.url("/good.png")]
    with pytest.raises(ReferenceImageError) as caught:
        run_with(lambda fetcher: fetcher.fetch_all(urls), FetchLimits(allow_private=True,
                                                                       timeout_s=30))
    assert (caught.value.url, caught.value.reason) == (urls[1], "HTTP 404")


def test_fetch_all_of_nothing_is_empty() -> None:
    assert run_with(lambda fetcher: fetcher.fetch_all([])) == []

"""Fetching reference images for image tasks, with every guard of CONTRACT.md §10.

A fetch is: parse the URL (``data:`` URIs are decoded locally), check the scheme, resolve the
host, refuse non-public addresses, connect to the address that was checked (so DNS rebinding
between check and connect cannot redirect us), stream the body up to a byte limit, follow at most
``max_redirects`` redirects by hand (each hop checked again), then decode off the event loop with a
pixel-count limit. Every failure is a ``ReferenceImageError`` naming the URL and the reason.
Nothing here touches a database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from PIL import Image

from imagegate.concurrency import all_or_cancel
from imagegate.errors import ReferenceImageError
from imagegate.imaging import ImageDecodeError, decode_image
from imagegate.net.netguard import (
    AddressPolicy,
    AddressRefused,
    PinnedTarget,
    Resolver,
    is_public_address,
    pin,
    resolve_host,
)

__all__ = ["FetchLimits", "FetchedImage", "ReferenceFetcher"]

_MIB = 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"Accept": "image/*", "Accept-Encoding": "identity"}

@dataclass(frozen=True)
class FetchLimits:
    """Limits on one reference image. ``timeout_s`` bounds the whole fetch, decoding included."""

    max_bytes: int = 20 * _MIB
    max_pixels: int = 64_000_000
    max_redirects: int = 3
    timeout_s: float = 30.0
    allow_private: bool = False  # IMAGEGATE_ALLOW_PRIVATE_NETWORKS


@dataclass(frozen=True)
class FetchedImage:
    """A decoded reference image. ``image`` is RGB or RGBA; ``format`` is PIL's name for the
    source format ("PNG", "JPEG", ...); ``size_bytes`` is the size of the encoded source."""

    url: str
    image: Image.Image
    format: str
    size_bytes: int


class ReferenceFetcher:
    """Fetches and decodes reference images under ``limits``.

    ``client`` must be the only network seam; redirects are never left to it. ``policy`` decides
    which resolved addresses may be contacted unless ``limits.allow_private``. ``fetch_all`` runs
    at most ``concurrency`` fetches at once.
    """

    def __init__(self, client: httpx.AsyncClient, limits: FetchLimits,
                 resolver: Resolver | None = None, *,
                 policy: AddressPolicy = is_public_address, concurrency: int = 4) -> None:
        self._client = client
        self._limits = limits
        self._resolver = resolver or resolve_host
        self._policy = policy
        self._concurrency = concurrency

    async def fetch_all(self, urls: Sequence[str]) -> list[FetchedImage]:
        """Fetch ``urls`` concurrently; results in input order. The first failure (in time)
        cancels the other fetches and is raised as its ``ReferenceImageError``."""
        gate = asyncio.Semaphore(self._concurrency)

        async def one(url: str) -> FetchedImage:
            async with gate:
                return await self.fetch(url)

        return await all_or_cancel(one(url) for url in urls)

    async def fetch(self, url: str) -> FetchedImage:
        """Fetch and decode one image within ``limits.timeout_s``.

        Raises ``ReferenceImageError(url, reason)`` on any failure.
        """
        seconds = self._limits.timeout_s
        try:
            async with asyncio.timeout(seconds):
                data = await self._load(url)
                return await self._decode(url, data)
        except TimeoutError as exc:
            raise ReferenceImageError(url, f"timed out after {seconds:g} s") from exc

    async def _load(self, url: str) -> bytes:
        if url[:5].lower() == "data:":
            return await asyncio.to_thread(_data_uri_bytes, url, self._limits.max_bytes)
        try:
            first = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ReferenceImageError(url, "not a valid URL") from exc
        return await self._download(url, first)

    async def _decode(self, url: str, data: bytes) -> FetchedImage:
        try:
            image, fmt = await asyncio.to_thread(_decode_with_format, data, self._limits.max_pixels)
        except ImageDecodeError as exc:
            raise ReferenceImageError(url, str(exc)) from exc
        return FetchedImage(url=url, image=image, format=fmt, size_bytes=len(data))

    async def _download(self, url: str, current: httpx.URL) -> bytes:
        """Follow up to ``max_redirects`` hops; errors on a later hop name the hop."""
        for hop in range(self._limits.max_redirects + 1):
            try:
                outcome = await self._get(current)
            except ReferenceImageError as exc:
                if hop == 0:
                    raise ReferenceImageError(url, exc.reason) from exc
                raise ReferenceImageError(
                    url, f"after redirect to {_shorten(exc.url)}: {exc.reason}") from exc
            if isinstance(outcome, bytes):
                return outcome
            current = outcome
        raise ReferenceImageError(url, f"redirected more than {self._limits.max_redirects} times")

    async def _get(self, current: httpx.URL) -> bytes | httpx.URL:
        """One request: the body, or the URL a redirect points to."""
        target = await self._target(current)
        try:
            async with self._client.stream(
                "GET", target.url, headers=target.headers, extensions=target.extensions,
                follow_redirects=False,
            ) as response:
                if response.status_code in _REDIRECT_STATUSES:
                    return _redirect_location(current, response)
                if not 200 <= response.status_code < 300:
                    raise ReferenceImageError(str(current), f"HTTP {response.status_code}")
                return await self._read_body(current, response)
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, OSError) as exc:
            raise ReferenceImageError(str(current), _network_reason(exc)) from exc

    async def _target(self, current: httpx.URL) -> PinnedTarget:
        try:
            return await pin(current, headers=_HEADERS, allow_private=self._limits.allow_private,
                             resolver=self._resolver, policy=self._policy)
        except AddressRefused as exc:
            raise ReferenceImageError(str(current), str(exc)) from exc

    async def _read_body(self, current: httpx.URL, response: httpx.Response) -> bytes:
        """The body, stopping as soon as it exceeds ``max_bytes``."""
        limit = self._limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ReferenceImageError(str(current), f"larger than the {_size(limit)} limit")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise ReferenceImageError(str(current), f"larger than the {_size(limit)} limit")
        return bytes(body)


def _redirect_location(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    """The next hop, a relative Location resolved against the URL as the user wrote it."""
    location = response.headers.get("location")
    if not location:
        raise ReferenceImageError(
            str(current), f"HTTP {response.status_code} redirect without a Location")
    try:
        return current.join(location)
    except httpx.InvalidURL as exc:
        raise ReferenceImageError(str(current), "redirected to an invalid URL") from exc


def _data_uri_bytes(uri: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URI, within ``max_bytes``."""
    header, comma, payload = uri[5:].partition(",")
    media_type, *params = header.split(";")
    if not comma or not media_type.strip().lower().startswith("image/"):
        raise ReferenceImageError(uri, "data URI is not an image (data:image/...;base64,...)")
    if "base64" not in (param.strip().lower() for param in params):
        raise ReferenceImageError(uri, "data URI is not base64-encoded")
    compact = "".join(payload.split())
    if len(compact) * 3 // 4 - 2 > max_bytes:  # decoded size is at most two bytes less
        raise ReferenceImageError(uri, f"larger than the {_size(max_bytes)} limit")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReferenceImageError(uri, "data URI is not valid base64") from exc
    if len(data) > max_bytes:
        raise ReferenceImageError(uri, f"larger than the {_size(max_bytes)} limit")
    return data


def _decode_with_format(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """``decode_image`` plus the source's format name, which the converted image no longer has."""
    image = decode_image(data, max_pixels)
    with warnings.catch_warnings():  # pixel count is already checked; same filter as decode_image
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            return image, probe.format or "unknown"


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the server"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    detail = str(exc) or type(exc).__name__
    return f"network error: {detail}"


def _size(n: int) -> str:
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def _shorten(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."

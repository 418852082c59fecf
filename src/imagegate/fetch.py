"""Fetching reference images for image tasks, with every guard of docs/contract.md §10.

A fetch is: parse the URL (``data:`` URIs are decoded locally), download it through
``net.download`` (scheme and address checked, the connection pinned to the checked address, the
body capped, at most ``max_redirects`` redirects followed by hand, each hop checked again), then
decode off the event loop with a pixel-count limit. Every failure is a ``ReferenceImageError``
naming the URL and the reason. Nothing here touches a database.
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
from imagegate.net.download import DownloadError, Refused, download, size_text
from imagegate.net.netguard import (
    AddressPolicy,
    Guard,
    NotPublic,
    Resolver,
    is_public_address,
    resolve_host,
    without_userinfo,
)

__all__ = ["FetchLimits", "FetchedImage", "ReferenceFetcher"]

_MIB = 1024 * 1024
# Said with a refused private address: a self-hosted service fetching from its own network is
# a choice its operator makes.
PRIVATE_HINT = ("references are fetched from public addresses only; the operator's setting "
                "allow_private_networks allows private ones")
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
        self._guard = Guard(allow_private=limits.allow_private, resolver=resolver or resolve_host,
                            policy=policy)
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

        Raises ``ReferenceImageError(url, reason)`` on any failure; its URLs are shown without
        any ``user:password@`` they carry.
        """
        seconds = self._limits.timeout_s
        shown = without_userinfo(url)
        try:
            async with asyncio.timeout(seconds):
                data = await self._load(url, shown)
                image, fmt = await self._decode(shown, data)
        except TimeoutError as exc:
            raise ReferenceImageError(shown, f"timed out after {seconds:g} s") from exc
        return FetchedImage(url=url, image=image, format=fmt, size_bytes=len(data))

    async def _load(self, url: str, shown: str) -> bytes:
        if url[:5].lower() == "data:":
            return await asyncio.to_thread(_data_uri_bytes, url, self._limits.max_bytes)
        try:
            first = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ReferenceImageError(shown, "not a valid URL") from exc
        return await self._download(shown, first)

    async def _decode(self, shown: str, data: bytes) -> tuple[Image.Image, str]:
        try:
            return await asyncio.to_thread(_decode_with_format, data, self._limits.max_pixels)
        except ImageDecodeError as exc:
            raise ReferenceImageError(shown, str(exc)) from exc

    async def _download(self, shown: str, first: httpx.URL) -> bytes:
        """The body; a failure on a later hop names that hop."""
        try:
            return await download(self._client, first, self._guard,
                                  max_bytes=self._limits.max_bytes,
                                  max_redirects=self._limits.max_redirects, headers=_HEADERS)
        except DownloadError as exc:
            reason = exc.reason
            if isinstance(exc, Refused) and isinstance(exc.refusal, NotPublic):
                reason += f" ({PRIVATE_HINT})"
            if exc.hop == 0:
                raise ReferenceImageError(shown, reason) from exc
            hop = _shorten(without_userinfo(str(exc.url)))
            raise ReferenceImageError(shown, f"after redirect to {hop}: {reason}") from exc


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
        raise ReferenceImageError(uri, f"larger than the {size_text(max_bytes)} limit")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReferenceImageError(uri, "data URI is not valid base64") from exc
    if len(data) > max_bytes:
        raise ReferenceImageError(uri, f"larger than the {size_text(max_bytes)} limit")
    return data


def _decode_with_format(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """``decode_image`` plus the source's format name, which the converted image no longer has."""
    image = decode_image(data, max_pixels)
    with warnings.catch_warnings():  # pixel count is already checked; same filter as decode_image
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            return image, probe.format or "unknown"


def _shorten(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."

"""Downloading a result picture an upstream points at: the one guarded download of the routes.

Result URLs come from an upstream, not from the operator, so they are fetched through
``net.download``, which checks every hop (the first URL and each redirect) with the route's
``Guard``: a host with a loopback, private, link-local or otherwise non-public address is refused
before any connection, and the connection goes to the address that was checked. Every failure is
a ``RouteError`` that names neither the address nor the port (a compromised upstream must not
get a port scanner out of our failMsg); the operator's log names the refused address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import httpx
from PIL import Image

from imagegate.errors import FailCode, RouteError
from imagegate.imaging import ImageDecodeError, decode_image
from imagegate.net.download import (
    BadStatus,
    DownloadError,
    Refused,
    TooLarge,
    TransportFailed,
    download,
)
from imagegate.net.netguard import AddressRefused, Guard, NotPublic, ResolveTimeout, UnresolvedHost

__all__ = ["MAX_REDIRECTS", "MAX_RESULT_PIXELS", "ResultDownloader", "reason"]

MAX_REDIRECTS = 3  # when downloading a result
MAX_RESULT_PIXELS = 100_000_000  # decompression-bomb guard; 4k outputs are under 20 MP


class ResultDownloader:
    """Downloads and decodes result pictures through ``client`` (which must not follow
    redirects), each hop checked by ``guard``. ``max_bytes`` caps one download; ``timeout_s``
    bounds one request. ``log`` is where a refused address is named."""

    def __init__(self, client: httpx.AsyncClient, guard: Guard, *, max_bytes: int,
                 timeout_s: float, log: logging.Logger) -> None:
        self._client = client
        self._guard = guard
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._log = log

    async def image(self, where: str, url: str, *,
                    headers: Mapping[str, str] | None = None) -> Image.Image:
        """The decoded picture at ``url``; ``where`` starts every error's message. Raises
        ``RouteError`` only."""
        try:
            first = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise RouteError.of(FailCode.UNKNOWN, f"{where}: invalid URL") from exc
        try:
            data = await download(self._client, first, self._guard, max_bytes=self.max_bytes,
                                  max_redirects=MAX_REDIRECTS,
                                  headers={"Accept": "image/*", **(headers or {})},
                                  timeout_s=self.timeout_s)
        except DownloadError as exc:
            raise self._error(where, exc) from exc
        try:
            return await asyncio.to_thread(decode_image, data, MAX_RESULT_PIXELS)
        except ImageDecodeError as exc:
            raise RouteError.of(FailCode.UNKNOWN, f"{where}: {exc}") from exc

    def _error(self, where: str, exc: DownloadError) -> RouteError:
        if isinstance(exc, Refused):
            return self._refused(where, exc.refusal)
        if isinstance(exc, BadStatus):
            return RouteError.of(FailCode.UNKNOWN, f"{where}: download answered HTTP "
                                 f"{exc.status} (expired or removed upstream)")
        if isinstance(exc, TooLarge):
            return RouteError.of(FailCode.UNKNOWN, f"{where}: larger than {exc.limit} bytes")
        if isinstance(exc, TransportFailed):
            if exc.timed_out:
                return RouteError.of(FailCode.TIMEOUT, f"{where}: download timed out")
            return RouteError.of(FailCode.UNKNOWN,
                                 f"{where}: download failed: {reason(exc.error)}")
        return RouteError.of(FailCode.UNKNOWN, f"{where}: {exc.reason}")

    def _refused(self, where: str, refusal: AddressRefused) -> RouteError:
        if isinstance(refusal, ResolveTimeout):
            return RouteError.of(FailCode.TIMEOUT, f"{where}: resolving the result host timed "
                                 "out")
        if isinstance(refusal, UnresolvedHost):
            return RouteError.of(FailCode.UNKNOWN, f"{where}: download failed: could not "
                                 "resolve the result host")
        if not isinstance(refusal, NotPublic):  # not http(s), no host
            return RouteError.of(FailCode.UNKNOWN, f"{where}: {refusal}")
        # The operator's log names the address; the failMsg must not.
        self._log.warning("%s: refused the upstream's result URL (%s); set private_results "
                          "on the route if it is meant to be private", where, refusal.detail)
        return RouteError(FailCode.UNKNOWN, f"{where}: the upstream's result URL points at "
                          "a non-public address; not downloaded", failover=True)


def reason(exc: Exception) -> str:
    """A short reason for a transport failure, for a message."""
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    return str(exc) or type(exc).__name__

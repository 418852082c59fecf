"""The one way a request is made on a client's behalf: checked, pinned, capped, redirects by hand.

``open_pinned`` sends one request to a ``PinnedTarget`` and never follows a redirect; callback
delivery uses it as it is (a POST whose answer is judged on its status line alone).
``download`` GETs a URL: every hop is checked by a ``Guard`` and connected to the address that
was checked, a redirect is followed by hand at most ``max_redirects`` times (each new hop
checked again), any 2xx answer is the result, and its body is read up to ``max_bytes``.

Every failure of ``download`` is a ``DownloadError`` naming the hop that failed (``url``;
``hop`` 0 is the URL asked for) and why (``reason``, for a person). The kinds, so that each
caller can map them to its own errors:

    DownloadError
    ├── Refused           the guard refused the hop; ``refusal`` is its AddressRefused
    ├── BadStatus         the answer was neither 2xx nor a redirect; ``status``
    ├── BadRedirect       a redirect without a Location, or to an invalid URL
    ├── TooManyRedirects  more than ``max_redirects`` (names the URL asked for)
    ├── TooLarge          the body is larger than ``max_bytes``; ``limit``
    └── TransportFailed   no usable answer: could not connect, timed out, broken stream;
                          ``error`` is httpx's exception, ``timed_out`` says which
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from imagegate.net.netguard import AddressRefused, Guard, PinnedTarget

__all__ = ["BadRedirect", "BadStatus", "DownloadError", "Refused", "TooLarge",
           "TooManyRedirects", "TransportFailed", "download", "open_pinned", "size_text",
           "transport_reason"]

_MIB = 1024 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


class DownloadError(Exception):
    """A guarded download failed at ``url`` (hop number ``hop``); ``reason`` says why."""

    def __init__(self, url: httpx.URL, hop: int, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.hop = hop
        self.reason = reason


class Refused(DownloadError):
    """The guard refused to contact the hop."""

    def __init__(self, url: httpx.URL, hop: int, refusal: AddressRefused) -> None:
        super().__init__(url, hop, str(refusal))
        self.refusal = refusal


class BadStatus(DownloadError):
    """The answer was neither a success nor a redirect."""

    def __init__(self, url: httpx.URL, hop: int, status: int) -> None:
        super().__init__(url, hop, f"HTTP {status}")
        self.status = status


class BadRedirect(DownloadError):
    """A redirect that cannot be followed: no Location, or not a valid URL."""


class TooManyRedirects(DownloadError):
    """The redirects went on past the limit."""


class TooLarge(DownloadError):
    """The body is larger than ``limit`` bytes; reading stopped there."""

    def __init__(self, url: httpx.URL, hop: int, limit: int) -> None:
        super().__init__(url, hop, f"larger than the {size_text(limit)} limit")
        self.limit = limit


class TransportFailed(DownloadError):
    """No usable answer from the hop."""

    def __init__(self, url: httpx.URL, hop: int, error: Exception) -> None:
        super().__init__(url, hop, transport_reason(error))
        self.error = error
        self.timed_out = isinstance(error, httpx.TimeoutException)


def open_pinned(client: httpx.AsyncClient, method: str, target: PinnedTarget, *,
                headers: Mapping[str, str] | None = None,
                **options: Any) -> AbstractAsyncContextManager[httpx.Response]:
    """``client.stream`` to the pinned address: one request, redirects never followed, the
    body unread. ``headers`` are added to the target's; ``options`` go to ``client.stream``
    (``content``, ``timeout``). Raises httpx's exceptions as they are."""
    return client.stream(method, target.url, headers={**target.headers, **(headers or {})},
                         extensions=target.extensions, follow_redirects=False, **options)


async def download(client: httpx.AsyncClient, url: httpx.URL, guard: Guard, *, max_bytes: int,
                   max_redirects: int = 3, headers: Mapping[str, str] | None = None,
                   timeout_s: float | None = None) -> bytes:
    """The body that ``url`` leads to, within ``max_bytes``; see the module docstring.

    ``timeout_s`` bounds each request as httpx does (connect, each read); ``None`` leaves the
    client's own. A deadline for the whole download is the caller's. Raises ``DownloadError``.
    """
    current = url
    for hop in range(max_redirects + 1):
        outcome = await _get(client, current, hop, guard, headers or {}, max_bytes, timeout_s)
        if isinstance(outcome, bytes):
            return outcome
        current = outcome
    raise TooManyRedirects(url, 0, f"redirected more than {max_redirects} times")


async def _get(client: httpx.AsyncClient, url: httpx.URL, hop: int, guard: Guard,
               headers: Mapping[str, str], max_bytes: int,
               timeout_s: float | None) -> bytes | httpx.URL:
    """One hop: the body, or the URL a redirect points to."""
    try:
        target = await guard.pin(url, headers)
    except AddressRefused as exc:
        raise Refused(url, hop, exc) from exc
    options: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
    try:
        async with open_pinned(client, "GET", target, **options) as response:
            if response.status_code in _REDIRECT_STATUSES:
                return _location(url, hop, response)
            if not 200 <= response.status_code < 300:
                raise BadStatus(url, hop, response.status_code)
            return await _read_capped(url, hop, response, max_bytes)
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, OSError) as exc:
        raise TransportFailed(url, hop, exc) from exc


def _location(url: httpx.URL, hop: int, response: httpx.Response) -> httpx.URL:
    """The next hop, a relative Location resolved against the URL as it was written."""
    location = response.headers.get("location")
    if not location:
        raise BadRedirect(url, hop, f"HTTP {response.status_code} redirect without a Location")
    try:
        return url.join(location)
    except httpx.InvalidURL as exc:
        raise BadRedirect(url, hop, "redirected to an invalid URL") from exc


async def _read_capped(url: httpx.URL, hop: int, response: httpx.Response,
                       limit: int) -> bytes:
    """The body, refused from its Content-Length or as soon as it passes ``limit``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(url, hop, limit)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise TooLarge(url, hop, limit)
    return bytes(body)


def transport_reason(exc: Exception) -> str:
    """Why a request got no usable answer, in a sentence (no exception class names, no
    ``[Errno N]``, no address)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for the server"
    detail = _ERRNO.sub("", str(exc)).strip()
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {detail}" if detail else "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server broke off the answer"
    return f"network error: {detail}" if detail else "network error"


def size_text(n: int) -> str:
    """``n`` bytes as a person reads a limit: ``20 MB``, ``32 KB``, ``1000 bytes``."""
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


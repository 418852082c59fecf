"""Waiting for a task over HTTP (contract §15): the ``Prefer: wait=N`` header of a submit and the
``wait=N`` query parameter of a status read, and a wait that ends when its client goes away.

``Prefer`` follows RFC 7240: comma-separated preferences, each ``token [= word]`` with optional
``;`` parameters, names without regard to case, the first of a repeated preference counts, and
preferences this service does not know are ignored. Only a ``wait`` whose value is not a whole
number of seconds from 1 to 60 is refused (400 naming ``Prefer``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from imagegate.errors import InvalidRequest

__all__ = ["MAX_WAIT_S", "MIN_WAIT_S", "prefer_wait", "query_wait", "unless_disconnected"]

MIN_WAIT_S, MAX_WAIT_S = 1, 60
PREFER = "Prefer"

T = TypeVar("T")


def query_wait(request: Request) -> int | None:
    """The ``wait`` query parameter in seconds; None when absent; 400 naming ``wait`` when it
    is not a whole number from 1 to 60."""
    value = request.query_params.get("wait")
    if value is None:
        return None
    return _seconds(value, "wait", "wait")


def prefer_wait(request: Request) -> int | None:
    """The ``wait`` preference of the ``Prefer`` headers in seconds; None when there is none;
    400 naming ``Prefer`` when its value is not a whole number from 1 to 60."""
    for header in request.headers.getlist("prefer"):
        for preference in _split(header, ","):
            name, _, value = _split(preference, ";")[0].partition("=")
            if name.strip().lower() == "wait":
                return _seconds(_unquoted(value.strip()), PREFER, "Prefer: wait")
    return None


async def unless_disconnected(request: Request,
                              waiting: Coroutine[Any, Any, T]) -> tuple[T] | None:
    """``(result,)`` of ``waiting``, or None when the client disconnected first; then
    ``waiting`` is cancelled (and its subscriptions closed) at once, not left to its timeout.
    The request body must have been read already."""
    answer = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        answer.cancel()  # nothing when it has finished
    if answer in done:
        return (answer.result(),)
    with contextlib.suppress(asyncio.CancelledError):
        await answer
    return None


async def _disconnected(request: Request) -> None:
    """Return when the ASGI server says the client has gone (after the body, every message
    is that one)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _seconds(value: str, field: str, name: str) -> int:
    digits = value.lstrip("0")  # "01" is 1; and no int() of thousands of digits, which raises
    if (value.isascii() and value.isdigit() and len(digits) <= len(str(MAX_WAIT_S))
            and MIN_WAIT_S <= int(digits or "0") <= MAX_WAIT_S):
        return int(digits)
    raise InvalidRequest(f"{name} must be a whole number of seconds from {MIN_WAIT_S} to "
                         f"{MAX_WAIT_S}", field=field)


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double-quoted strings."""
    parts, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _unquoted(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return word

"""What the core asks its shells to do: the only I/O there is.

The operations of the client are written once, in core.py and waiting.py, as generators
(``Flow``): they yield an effect, and the shell (client.py with httpx.Client, async_client.py
with httpx.AsyncClient) performs it and sends the result back in, or throws an
``APIConnectionError`` in when no answer came. So retries, waiting, streaming and error mapping
exist once, and each shell is a loop that performs five kinds of effect.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .records import Progress
from .wire import Request

__all__ = ["Effect", "Flow", "Notify", "OpenStream", "ReadStream", "Send", "Sleep"]

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """Send ``request`` and read its whole answer: the result is a ``Reply``."""

    request: Request


@dataclass(frozen=True)
class OpenStream:
    """Send ``request``, whose answer may be an event stream. The result is a ``Reply``: for a
    2xx ``text/event-stream`` answer with an empty body, the stream staying open for
    ``ReadStream`` (reads wait at most ``read_timeout`` s for bytes); for any other answer with
    its whole body. Opening a stream closes the one open before, and so does a ``Send`` (its
    connection is given back for the request: a flow reads no stream after a Send); the run's
    end closes it too."""

    request: Request
    read_timeout: float


@dataclass(frozen=True)
class ReadStream:
    """The next bytes of the open stream; ``b""`` when it has ended."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Notify:
    """Call ``callback(progress)`` (the async shell awaits what it returns, if awaitable)."""

    callback: Callable[[Progress], Any]
    progress: Progress


Effect = Send | OpenStream | ReadStream | Sleep | Notify
Flow = Generator[Effect, Any, T]


class Stepper:
    """Runs a flow one effect at a time, for a shell: ``effect`` is what to perform next;
    ``resolve`` sends its result in, ``fail`` throws a connection failure in; once ``done``,
    ``result`` is the flow's value (its exceptions propagate out of resolve and fail)."""

    def __init__(self, flow: Generator[Effect, Any, Any]) -> None:
        self._flow = flow
        self.done = False
        self.result: Any = None
        self.effect: Effect = self._step(lambda: next(flow))

    def resolve(self, value: Any) -> None:
        self.effect = self._step(lambda: self._flow.send(value))

    def fail(self, exc: BaseException) -> None:
        self.effect = self._step(lambda: self._flow.throw(exc))

    def _step(self, advance: Callable[[], Effect]) -> Effect:
        try:
            return advance()
        except StopIteration as stop:
            self.done, self.result = True, stop.value
            return ReadStream()  # never performed: the flow is over

    def close(self) -> None:
        self._flow.close()

"""Server-sent events: an incremental parser of ``text/event-stream``, no I/O.

Feed it the bytes as they arrive, in chunks of any size; it returns the events completed so
far. It follows the WHATWG rules: lines end in CRLF, LF or CR; a line starting with ``:`` is a
comment; ``field: value`` loses one space after the colon; ``data`` lines join with newlines;
an empty line dispatches the event (none when it has no data); ``retry`` sets ``retry_ms``, the
reconnection delay. An ``id`` line fills the last event ID buffer, which becomes
``last_event_id`` (the value to send back as ``Last-Event-ID``) only when the event is
dispatched: a stream cut inside an event must not resume past it.

One parser reads one connection. A reconnection starts a new one, given the previous one's
``last_event_id`` and ``retry_ms``: half an event left by a cut stream is dropped, not glued
onto the next stream's first line. A line longer than ``MAX_LINE_CHARS`` is refused
(ValueError): an event of this API is a few kilobytes, and a stream that never ends a line
would otherwise grow the buffer without bound.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["MAX_LINE_CHARS", "SSEParser", "ServerSentEvent"]

MAX_LINE_CHARS = 1 << 20


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class SSEParser:
    def __init__(self, last_event_id: str | None = None, retry_ms: int | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._id_buffer = last_event_id
        self.last_event_id = last_event_id
        self.retry_ms = retry_ms

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that ``chunk`` completes, in order; raises ValueError when a line grows
        past MAX_LINE_CHARS."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            text, self._started = text.removeprefix("\ufeff"), True
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        if text:
            self._pending_cr = text.endswith("\r")
        lines = (self._buffer + text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE_CHARS or any(len(x) > MAX_LINE_CHARS for x in lines):
            raise ValueError(f"an event stream line is longer than {MAX_LINE_CHARS} characters")
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        self.last_event_id = self._id_buffer
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id)

"""``GET /api/v1/streamTask/{model}?taskId=``: a task's changes as Server-Sent Events
(docs/contract.md §15, "Extension: streaming a task").

The endpoint authenticates, parses and takes the stream's first event from the use case
(``app/stream.py``) before it answers, so a bad key, an unknown task or a missing ``taskId`` is
the ordinary JSON error, and so is a key past its limit of open streams (429). Then
``EventStream`` sends each event as it comes, unbuffered, and ends when the use case ends, when
the client goes away (it listens for the disconnect itself, whatever ASGI version the server
speaks, so an idle stream's subscription is dropped at once, not at its next keep-alive), or
when a send fails.

    retry: 1000                   (the first message only)
    event: status | done
    id: <the snapshot's id>
    data: <one line of JSON>

    : keep-alive
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from imagegate.api.endpoints import api_of, key_and_task_id
from imagegate.app.stream import RETRY_MS, EventKind, StreamEvent

__all__ = ["EventStream", "frame", "stream_task"]

log = logging.getLogger("imagegate.api")

# Exactly text/event-stream (no charset: the stream is UTF-8 by definition), never cached nor
# buffered by a proxy (nginx reads X-Accel-Buffering), and no Content-Length.
HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache",
           "x-accel-buffering": "no"}


async def stream_task(request: Request) -> Response:
    api = api_of(request)
    key, task_id = await key_and_task_id(api, request)
    events = api.streams.follow(key, request.path_params["model"], task_id,
                                request.headers.get("last-event-id"))
    first = await anext(events)  # NotFound and the like, before the answer starts
    if request.method == "HEAD":  # the headers alone: no stream is kept open for them
        await events.aclose()
        return EventStream(None, None)
    return EventStream(first, events)


def frame(event: StreamEvent, *, first: bool = False) -> bytes:
    """One message, with the ``retry`` field when it is the stream's first."""
    retry = b"retry: %d\n" % RETRY_MS if first else b""
    if event.kind is EventKind.KEEP_ALIVE:
        return b": keep-alive\n" + retry + b"\n"
    return b"%sevent: %s\nid: %s\ndata: %s\n\n" % (
        retry, event.kind.value.encode(), event.id.encode(), event.data)


class EventStream(Response):
    """A ``text/event-stream`` answer of ``first`` and then the rest of ``events``; with
    neither, the headers alone (a HEAD request's answer: no body frame)."""

    def __init__(self, first: StreamEvent | None,
                 events: AsyncGenerator[StreamEvent, None] | None) -> None:
        # Not Response.__init__: it would give the answer a Content-Length of its empty body.
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self.first = first
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.first is None or self.events is None:
            await self._start(send)
            await _end(send)
            return
        sending = asyncio.ensure_future(self._send_all(self.first, self.events, send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            sending.cancel()
            # Until the sending has stopped: it raises nothing (it ends the answer and closes
            # the events itself), and a cancellation of this handler goes on up from here.
            await asyncio.wait({sending})

    async def _start(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})

    async def _send_all(self, first: StreamEvent, events: AsyncGenerator[StreamEvent, None],
                        send: Send) -> None:
        try:
            await self._start(send)
            await send({"type": "http.response.body", "body": frame(first, first=True),
                        "more_body": True})
            async for event in events:
                await send({"type": "http.response.body", "body": frame(event),
                            "more_body": True})
        except OSError:
            return  # the client has gone
        except Exception:
            # The answer has started: the stream ends; its client resumes with Last-Event-ID.
            log.warning("a task stream failed; ending it", exc_info=True)
        finally:
            await events.aclose()  # now, not when collected: it holds the subscriptions
        await _end(send)


async def _end(send: Send) -> None:
    """The answer's last (empty) body frame; a client that has gone by then is no error."""
    try:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass
    except Exception:
        log.warning("ending a task stream failed", exc_info=True)


async def _disconnected(receive: Receive) -> None:
    """Return when the server says the client has gone (a GET has no body to read first)."""
    while (await receive())["type"] != "http.disconnect":
        pass

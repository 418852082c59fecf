"""Waiting for a task to end: over the event stream of streamTask when the server has one,
else by polling statusTask at the contract's cadence. One flow for both shells.

The stream (``GET /api/v1/streamTask/{model}?taskId=``) sends ``status`` events while the task
runs and one ``done`` event, with the final status envelope, when it ends. A stream cut before
``done`` is opened again with ``Last-Event-ID`` after the server's ``retry`` delay. A server
without the stream (404, 405, or an answer that is not ``text/event-stream``: APIXO) is polled.

The task lives on the server, so a wait outlasts the server's own outages (a restart, a
deploy): a request of the wait that finds no server, or answers 429 or a 5xx, is tried again,
with the policy's backoff and never sooner than a Retry-After, until the wait's timeout;
without one, for ``OUTAGE_S``. Those tries replace the request's own retries, which would not
keep to the timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import errors, wire
from .backoff import RetryPolicy, parse_retry_after
from .calls import call
from .effects import Flow, Notify, ReadStream, Sleep
from .records import Progress, TaskStatus
from .sse import ServerSentEvent, SSEParser
from .wire import Reply, Request, Wire

__all__ = ["OUTAGE_S", "STREAM_IDLE_S", "Waiter"]

# The server sends a keep-alive comment every 15 s; this long without a byte, the connection
# is taken for dead and opened again.
STREAM_IDLE_S = 45.0
_NO_STREAM = frozenset({404, 405, 406, 501})
# How long a wait without a timeout keeps trying a server it cannot reach (or that answers 429
# or a 5xx) before it gives up with that error.
OUTAGE_S = 60.0
_OUTAGE_STATUSES = frozenset({429, 500, 502, 503, 504})


class Waiter:
    def __init__(self, wire_: Wire, policy: RetryPolicy, model: str, task_id: str,
                 timeout: float | None, on_progress: Callable[[Progress], Any] | None,
                 poll_interval: float, request_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.wire, self.policy, self.model, self.task_id = wire_, policy, model, task_id
        self.timeout, self.on_progress = timeout, on_progress
        self.poll_interval, self.request_timeout = poll_interval, request_timeout
        self.clock = clock
        self.once = replace(policy, max_retries=0)  # the wait's own tries stand for retries
        self.started = clock()
        self._last: tuple[str, str | None, int | None] | None = None

    def run(self, first_poll_delay: float) -> Flow[TaskStatus]:
        """The finished task; raises TaskFailed when it failed, WaitTimeout after ``timeout``.
        """
        task = yield from self._stream()
        if task is None:
            task = yield from self._poll(first_poll_delay)
        if task.state == "failed":
            raise errors.TaskFailed(task)
        return task

    def _remaining(self) -> float | None:
        """Seconds the wait has left (None: no limit); raises WaitTimeout once none."""
        left = self._left()
        if left is not None and left <= 0:
            raise errors.WaitTimeout(self.task_id, self.timeout or 0.0)
        return left

    def _left(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout - self.clock()

    def _call(self, request: Request, read_timeout: float | None = None) -> Flow[Reply]:
        """``call`` with a wait's patience (this module's docstring): the first answer that is
        not a server's outage, or the outage's last answer or error once the wait cannot go
        on."""
        since, attempt = self.clock(), 0
        while True:
            try:
                reply = yield from call(self.once, request, read_timeout=read_timeout)
            except errors.APIConnectionError:
                if not (yield from self._after_outage(since, attempt)):
                    raise
            else:
                if reply.status not in _OUTAGE_STATUSES:
                    return reply
                after = parse_retry_after(reply.header("retry-after"))
                if not (yield from self._after_outage(since, attempt, after)):
                    return reply
            attempt += 1

    def _after_outage(self, since: float, attempt: int,
                      retry_after: float | None = None) -> Flow[bool]:
        """Sleep before the next try of an outage (at least the server's Retry-After); False
        when the wait cannot go on, or the server asks to be left alone past its end."""
        left = self._left()
        if left is None:
            left = since + OUTAGE_S - self.clock()
        if left <= 0 or (retry_after is not None and retry_after >= left):
            return False
        yield Sleep(min(max(self.policy.backoff(attempt), retry_after or 0.0), left))
        return True

    def _seen(self, task: TaskStatus, queue_position: int | None = None) -> Flow[None]:
        now = (task.state, task.stage, queue_position)
        if self.on_progress is not None and now != self._last:
            self._last = now
            yield Notify(self.on_progress, Progress(task.task_id, task.state, task.stage,
                                                    queue_position, self.clock() - self.started))

    # Streaming ------------------------------------------------------------------------------

    def _stream(self) -> Flow[TaskStatus | None]:
        """The finished task, or None when the server has no stream to offer."""
        last_event_id: str | None = None
        retry_ms: int | None = None
        while True:
            left = self._remaining()
            read_timeout = STREAM_IDLE_S if left is None else min(STREAM_IDLE_S, left)
            request = self.wire.stream(self.model, self.task_id, last_event_id)
            reply = yield from self._call(request, read_timeout)
            if not _is_stream(reply):
                if reply.status in _NO_STREAM or reply.status < 400:
                    return None
                raise wire.error_for(reply.status, reply.headers, reply.body)
            # One parser per connection: what a cut left half-read is dropped with it.
            parser = SSEParser(last_event_id, retry_ms)
            task = yield from self._read(parser)
            if task is not None:
                return task
            last_event_id, retry_ms = parser.last_event_id, parser.retry_ms
            delay = (retry_ms if retry_ms is not None else 1000) / 1000
            left = self._remaining()
            yield Sleep(delay if left is None else min(delay, left))

    def _read(self, parser: SSEParser) -> Flow[TaskStatus | None]:
        """Events until ``done`` (the finished task) or the stream's end or failure (None)."""
        while True:
            try:
                chunk: bytes = yield ReadStream()
            except errors.APIConnectionError:
                return None
            if not chunk:
                return None
            self._remaining()  # keep-alives alone must not outlast the wait's timeout
            try:
                events = parser.feed(chunk)
            except ValueError as exc:
                raise errors.ServerError(f"the event stream is not one: {exc}", status=200,
                                         body=None) from None
            for event in events:
                task = yield from self._event(event)
                if task is not None:
                    return task

    def _event(self, event: ServerSentEvent) -> Flow[TaskStatus | None]:
        if event.event not in ("status", "done"):
            return None
        payload = _payload(event)
        if event.event == "status":
            position = payload.get("queuePosition")
            yield from self._seen(wire.task_status(payload, self.model),
                                  position if isinstance(position, int) else None)
            return None
        task = wire.task_status(payload.get("data"), self.model)
        yield from self._seen(task)
        return task

    # Polling --------------------------------------------------------------------------------

    def _poll(self, delay: float) -> Flow[TaskStatus]:
        while True:
            left = self._remaining()
            if delay > 0:
                yield Sleep(delay if left is None else min(delay, left))
            reply = yield from self._call(self.wire.status(self.model, self.task_id))
            task = wire.task_status(wire.data_of(reply), self.model)
            yield from self._seen(task)
            if task.finished:
                return task
            delay = self.poll_interval


def _payload(event: ServerSentEvent) -> dict[str, Any]:
    """An event's JSON object; a ServerError naming the event when it is not one."""
    try:
        payload = json.loads(event.data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise errors.ServerError(f"the event stream sent a {event.event} event that is not a "
                                 "JSON object", status=200, body=event.data)
    return payload


def _is_stream(reply: Reply) -> bool:
    return 200 <= reply.status < 300 and reply.media_type == "text/event-stream"

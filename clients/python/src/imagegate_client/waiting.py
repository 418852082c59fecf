"""Waiting for a task to end: over the event stream of streamTask when the server has one,
else by polling statusTask at the contract's cadence. One flow for both shells.

The stream (``GET /api/v1/streamTask/{model}?taskId=``) sends ``status`` events while the task
runs and one ``done`` event, with the final status envelope, when it ends. A stream cut before
``done`` is opened again with ``Last-Event-ID`` after the server's ``retry`` delay. A server
without the stream (404, 405, or an answer that is not ``text/event-stream``: APIXO) is polled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from . import errors, wire
from .backoff import RetryPolicy
from .calls import call
from .effects import Flow, Notify, ReadStream, Sleep
from .records import Progress, TaskStatus
from .sse import ServerSentEvent, SSEParser
from .wire import Reply, Wire

__all__ = ["STREAM_IDLE_S", "Waiter"]

# The server sends a keep-alive comment every 15 s; this long without a byte, the connection
# is taken for dead and opened again.
STREAM_IDLE_S = 45.0
_NO_STREAM = frozenset({404, 405, 406, 501})


class Waiter:
    def __init__(self, wire_: Wire, policy: RetryPolicy, model: str, task_id: str,
                 timeout: float | None, on_progress: Callable[[Progress], Any] | None,
                 poll_interval: float, request_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.wire, self.policy, self.model, self.task_id = wire_, policy, model, task_id
        self.timeout, self.on_progress = timeout, on_progress
        self.poll_interval, self.request_timeout = poll_interval, request_timeout
        self.clock = clock
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
        if self.timeout is None:
            return None
        left = self.started + self.timeout - self.clock()
        if left <= 0:
            raise errors.WaitTimeout(self.task_id, self.timeout)
        return left

    def _seen(self, task: TaskStatus, queue_position: int | None = None) -> Flow[None]:
        now = (task.state, task.stage, queue_position)
        if self.on_progress is not None and now != self._last:
            self._last = now
            yield Notify(self.on_progress, Progress(task.task_id, task.state, task.stage,
                                                    queue_position, self.clock() - self.started))

    # Streaming ------------------------------------------------------------------------------

    def _stream(self) -> Flow[TaskStatus | None]:
        """The finished task, or None when the server has no stream to offer."""
        parser = SSEParser()
        while True:
            left = self._remaining()
            read_timeout = STREAM_IDLE_S if left is None else min(STREAM_IDLE_S, left)
            request = self.wire.stream(self.model, self.task_id, parser.last_event_id)
            reply = yield from call(self.policy, request, read_timeout=read_timeout)
            if not _is_stream(reply):
                if reply.status in _NO_STREAM or reply.status < 400:
                    return None
                raise wire.error_for(reply.status, reply.headers, reply.body)
            task = yield from self._read(parser)
            if task is not None:
                return task
            delay = (parser.retry_ms if parser.retry_ms is not None else 1000) / 1000
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
            for event in parser.feed(chunk):
                task = yield from self._event(event)
                if task is not None:
                    return task

    def _event(self, event: ServerSentEvent) -> Flow[TaskStatus | None]:
        if event.event not in ("status", "done"):
            return None
        payload = json.loads(event.data)
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
            reply = yield from call(self.policy, self.wire.status(self.model, self.task_id))
            task = wire.task_status(wire.data_of(reply), self.model)
            yield from self._seen(task)
            if task.finished:
                return task
            delay = self.poll_interval


def _is_stream(reply: Reply) -> bool:
    return 200 <= reply.status < 300 and reply.media_type == "text/event-stream"

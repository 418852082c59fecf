"""Following a task as it changes (``GET /api/v1/streamTask``, docs/contract.md §15): a
stream of snapshots of the key's task, one each time its state, stage or queue position
changes, and a last one when it ends.

A stream subscribes to the task's events before it reads the task, so no change slips between
the read and the wait. While the task does not change the stream costs no query: its task's
events wake it (from any process, through PostgreSQL's LISTEN/NOTIFY), a running attempt's
stages come with their events as progress notes (so each stage is shown even when several
land before the stream runs, and none needs a read), and the queue position comes from the
process's ``QueuePositions``, one query for every stream. Where events may not reach the
process (processes sharing a SQLite file) it reads the task every ``events.recheck_s``.

Each snapshot has an id made of what it shows (the attempt, the stage, the position), so any
process can tell whether a client that resumes with it has seen the current snapshot.

A key holds at most ``MAX_STREAMS_PER_KEY`` open streams in one process (or its limit of
unfinished tasks, when that is higher); one more is refused (429) before it subscribes. The
keys holding streams are read again together (``StreamKeys``: one query per interval for all
of them): a revoked key's streams end, and their clients reconnect to a 401.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum

from imagegate.app.queue_positions import QueuePositions, Spot
from imagegate.app.stream_keys import StreamKeys
from imagegate.app.tasks import Tasks, json_bytes
from imagegate.errors import TooManyRequests
from imagegate.events import Progress, TaskEvents, Watch
from imagegate.store.base import ApiKey
from imagegate.tasks import Task, TaskState, render_status

__all__ = ["KEEP_ALIVE", "KEEP_ALIVE_S", "MAX_STREAMS_PER_KEY", "MAX_STREAM_S", "RETRY_MS",
           "EventKind", "StreamEvent", "Streams"]

KEEP_ALIVE_S = 15.0  # a keep-alive when nothing was sent for this long
MAX_STREAM_S = 600.0  # a stream ends after this long; its client resumes it
FIRST_POSITION_S = 2.0  # a new stream of a queued task waits this long for its position
RETRY_MS = 1000  # how long a client waits before it reconnects to a stream that ended early
# Open streams of one key in one process (or the key's unfinished-task limit, if higher):
# each holds a connection and its memory until its task ends, so one key cannot take them all.
MAX_STREAMS_PER_KEY = 100
STREAMS_RETRY_AFTER_S = 5.0
# A running attempt's stages in their order: a progress note that is not ahead of what the
# stream has shown is stale (a read already showed more) and is dropped.
RUNNING_STAGES = ("running", "fetching", "generating", "storing")


class EventKind(StrEnum):
    STATUS = "status"
    DONE = "done"
    KEEP_ALIVE = "keep-alive"


@dataclass(frozen=True)
class StreamEvent:
    """One message of a stream: a snapshot (``status``), the end (``done``: ``data`` is the
    status answer's whole body), or a keep-alive. ``data`` is one line of JSON."""

    kind: EventKind
    id: str = ""
    data: bytes = b""


KEEP_ALIVE = StreamEvent(EventKind.KEEP_ALIVE)


@dataclass
class _Following:
    """One stream between its events: the task as last shown or read, the id of the snapshot
    the client has (its ``Last-Event-ID`` at first), and its clock (loop time)."""

    task: Task
    sent: str | None
    quiet_since: float  # when the stream last sent something (or opened)
    recheck_at: float  # when to read the task again where events may not reach the process
    ends: float  # when the stream has run its time
    opened: bool = False  # whether the stream has sent anything
    finished: bool = False  # the done event is sent: the stream ends

    def sent_at(self, now: float) -> None:
        self.opened, self.quiet_since = True, now

    def keep_alive_due(self, now: float, keep_alive_s: float) -> bool:
        return now >= self.quiet_since + keep_alive_s


class Streams:
    """``follow`` a task. ``close`` ends every stream of the process (shutdown)."""

    def __init__(self, tasks: Tasks, events: TaskEvents, positions: QueuePositions,
                 keys: StreamKeys, *, keep_alive_s: float = KEEP_ALIVE_S,
                 max_duration_s: float = MAX_STREAM_S) -> None:
        self.tasks = tasks
        self.events = events
        self.positions = positions
        self.keys = keys
        self.keep_alive_s = keep_alive_s
        self.max_duration_s = max_duration_s
        self._closing = asyncio.Event()

    def open_of(self, key: ApiKey) -> int:
        """How many streams ``key`` holds open in this process now."""
        return self.keys.slots.held(key.id)

    def end_all(self) -> None:
        """End every stream now and refuse none: new ones end after their first event (the
        process is stopping; their clients resume elsewhere)."""
        self._closing.set()

    async def close(self) -> None:
        self.end_all()
        await self.positions.close()
        await self.keys.close()

    async def follow(self, key: ApiKey, model_id: str, task_id: str,
                     last_event_id: str | None = None) -> AsyncGenerator[StreamEvent, None]:
        """The stream of the key's task of ``model_id``. Its first event comes at once: the
        task now, or a keep-alive when ``last_event_id`` is the id of the task now; the
        ``done`` event is the last. ``NotFound`` (before any event) as for a status read, and
        ``TooManyRequests`` when the key holds as many streams as it may. It ends early when
        the process closes, after ``max_duration_s``, or when its key is found revoked.
        Closed or cancelled, it leaves no subscription behind."""
        if self.keys.slots.full(key):
            raise TooManyRequests(
                f"this API key has {self.keys.slots.allowed(key)} task streams open on this "
                "server, as many as it may; close one, or poll statusTask",
                retry_after=STREAMS_RETRY_AFTER_S, reason="streams_limit")
        with self.keys.hold(key.id) as revoked:
            events = self._follow(key, model_id, task_id, last_event_id, revoked)
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()  # now, not when collected: it holds the subscriptions

    async def _follow(self, key: ApiKey, model_id: str, task_id: str,
                      last_event_id: str | None, revoked: asyncio.Event,
                      ) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        with self.events.watch(task_id) as watch, self.positions.track(task_id) as spot:
            task = await self.tasks.owned(key, task_id, model_id)  # after the watch began
            state = _Following(task, last_event_id, quiet_since=loop.time(),
                               recheck_at=self._recheck_at(loop),
                               ends=loop.time() + self.max_duration_s)
            versions = [task]
            while True:
                async with aclosing(self._show(versions, state, spot, loop)) as shown:
                    async for event in shown:
                        yield event
                if state.finished:
                    return
                waited = await self._wait(watch, spot, revoked,
                                          self._quiet_for(state, loop.time()))
                if not waited or loop.time() >= state.ends:
                    return  # closing, the key was revoked, or the stream has run its time
                versions = await self._next_versions(
                    state, watch, spot, lambda: self.tasks.owned(key, task_id, model_id),
                    loop)
                if not versions and state.keep_alive_due(loop.time(), self.keep_alive_s):
                    state.sent_at(loop.time())
                    yield KEEP_ALIVE

    async def _show(self, versions: list[Task], state: _Following, spot: Spot,
                    loop: asyncio.AbstractEventLoop) -> AsyncGenerator[StreamEvent, None]:
        """The events for ``versions`` of the task, in order: a snapshot of each that differs
        from what the client has, or the ``done`` event of an ended one (the last); a
        keep-alive when the stream opens with nothing to send (its client is up to date)."""
        for task in versions:
            state.task = task
            if task.state.terminal:
                state.finished = True
                yield self._done(task)
                return
            event = await self._snapshot(task, spot)
            if event.id != state.sent:
                state.sent = event.id
                state.sent_at(loop.time())
                yield event
        if not state.opened:  # resumed where the client was: say the stream is open
            state.sent_at(loop.time())
            yield KEEP_ALIVE

    def _quiet_for(self, state: _Following, now: float) -> float:
        """How long the stream may wait for a change before it must do something else: send
        a keep-alive, read the task again, or end."""
        return max(0.0, min(state.quiet_since + self.keep_alive_s, state.ends,
                            state.recheck_at) - now)

    async def _next_versions(self, state: _Following, watch: Watch, spot: Spot,
                             read: Callable[[], Awaitable[Task]],
                             loop: asyncio.AbstractEventLoop) -> list[Task]:
        """After a wake: the versions of the task to show next (none when nothing changed).
        Those its progress notes tell, the task read again when a change came without a note
        or its recheck is due, or the task as shown when only its position moved."""
        versions, must_read = self._heard(state.task, watch, spot)
        if must_read or loop.time() >= state.recheck_at:
            versions.append(await read())
            state.recheck_at = self._recheck_at(loop)
        elif not versions and spot.moved.is_set():
            versions = [state.task]  # only its position changed
        spot.moved.clear()
        return versions

    def _recheck_at(self, loop: asyncio.AbstractEventLoop) -> float:
        recheck = self.events.recheck_s
        return float("inf") if recheck is None else loop.time() + recheck

    async def _wait(self, watch: Watch, spot: Spot, revoked: asyncio.Event,
                    within_s: float) -> bool:
        """Until the task changes, its position moves, or ``within_s`` seconds pass; False
        when the process is closing or the stream's key was found revoked."""
        if self._closing.is_set() or revoked.is_set():
            return False
        waits = [asyncio.ensure_future(watch.wait(within_s)),
                 asyncio.ensure_future(spot.moved.wait()),
                 asyncio.ensure_future(self._closing.wait()),
                 asyncio.ensure_future(revoked.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return not (self._closing.is_set() or revoked.is_set())

    def _heard(self, task: Task, watch: Watch, spot: Spot) -> tuple[list[Task], bool]:
        """The versions of ``task`` its progress notes tell, in order, and whether it must be
        read: a change came without a note, or it left the queue as far as its spot knows."""
        notes, unexplained = watch.take_notes()
        shown: list[Task] = []
        for note in notes:
            ahead = _advanced(shown[-1] if shown else task, note)
            if ahead is not None:
                shown.append(ahead)
        left_queue = spot.queued and spot.known and spot.position is None
        return shown, unexplained or (left_queue and not shown)

    async def _snapshot(self, task: Task, spot: Spot) -> StreamEvent:
        queued = task.state is TaskState.QUEUED
        spot.set_queued(queued)
        data = render_status(task, self.tasks.base_url)
        event_id = f"{task.attempt}.{task.stage}"
        if queued:
            position = spot.position if spot.known else await spot.first(FIRST_POSITION_S)
            if position is not None:
                data["queuePosition"] = position
                event_id += f".{position}"
        return StreamEvent(EventKind.STATUS, event_id, json_bytes(data))

    def _done(self, task: Task) -> StreamEvent:
        """The status answer's whole body, the very bytes statusTask answers."""
        return StreamEvent(EventKind.DONE, f"{task.attempt}.done", self.tasks.answer(task).body)


def _advanced(task: Task, note: Progress) -> Task | None:
    """``task`` as ``note`` says it is now; None when the note is not ahead of it (a note of
    an earlier attempt or stage, already overtaken by a read)."""
    if note.stage not in RUNNING_STAGES or task.state.terminal:
        return None
    rank = (RUNNING_STAGES.index(task.stage) if task.state is TaskState.RUNNING
            and task.stage in RUNNING_STAGES else len(RUNNING_STAGES))
    if (note.attempt, RUNNING_STAGES.index(note.stage)) <= (task.attempt, rank):
        return None
    return dataclasses.replace(task, state=TaskState.RUNNING, stage=note.stage,
                               attempt=note.attempt)

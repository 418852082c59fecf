"""Task events shared by every process on one PostgreSQL database, through LISTEN/NOTIFY.

``PostgresEvents`` is ``TaskEvents`` whose three notifications also reach the other processes:
``work_available`` notifies channel ``imagegate_work``, ``delivery_queued``
``imagegate_deliveries``, and ``task_changed(id)`` ``imagegate_task`` with the task id as its
payload (``id attempt stage`` when the change is a running attempt's progress, in the order
announced). So a submit in an API process wakes the idle workers of every worker process, and
a task changing in a worker wakes the waiters and streams of the task in every API process.

Each notification wakes this process's own waiters at once, then goes out from a sender task on
its own connection: the callers have already committed what they announce, and a burst of them
(many submits) leaves as one ``pg_notify`` statement per round trip. One listening connection
per process turns the other processes' notifications (its own are recognised by the sender's
backend pid and skipped) into the local signals and waiters.

Everything here is best effort, a shortcut and never the only path: a notification that cannot
be sent is kept and sent after a reconnect, and when the listening connection drops it
reconnects with exponential backoff, meanwhile workers and dispatchers keep finding their work
through their slow poll and waiters read their task again every ``RECHECK_S``. Once listening
again it wakes every local signal and waiter, since a change may have been missed while it was
down (a waiter that wakes reads the task again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from imagegate.events import Progress, TaskEvents
from imagegate.store.postgres import split_url

__all__ = ["CHANNELS", "PostgresEvents"]

log = logging.getLogger(__name__)

WORK, DELIVERIES, TASK = "imagegate_work", "imagegate_deliveries", "imagegate_task"
CHANNELS = (WORK, DELIVERIES, TASK)
HEALTH_CHECK_S = 30.0  # an idle listening connection is checked this often
CLOSE_FLUSH_S = 1.0  # close() sends what is pending for at most this long
RECHECK_S = 2.0  # while not listening, waiters read their task again this often
NOTIFY = ("SELECT pg_notify(channel, payload) "
          "FROM unnest(%s::text[], %s::text[]) AS n(channel, payload)")


class PostgresEvents(TaskEvents):
    """``TaskEvents`` across processes. ``start`` before use (it returns once the first attempt
    to listen has succeeded or failed), ``close`` at the end; both from the event loop that
    uses the events."""

    def __init__(self, conninfo: str, *, backoff_s: tuple[float, float] = (0.1, 10.0)) -> None:
        super().__init__()
        params = conninfo_to_dict(conninfo)
        params.setdefault("connect_timeout", 5)
        params.setdefault("application_name", "imagegate-events")
        self._conninfo = make_conninfo("", **params)
        self._backoff_s = backoff_s
        self._work = self._deliveries = False  # to send
        self._tasks: dict[str, None] = {}  # payloads to send, in order
        self._outbox = asyncio.Event()
        self._sender_pid: int | None = None
        self._listening = False
        self._tried = asyncio.Event()
        self._closing = False
        self._loops: list[asyncio.Task[None]] = []

    @classmethod
    def from_url(cls, url: str) -> PostgresEvents:
        """From the store's ``postgresql://`` URL (its pool options are ignored here)."""
        return cls(split_url(url)[0])

    @property
    def listening(self) -> bool:
        """Whether other processes' notifications reach this one now."""
        return self._listening

    @property
    def recheck_s(self) -> float | None:
        return None if self._listening else RECHECK_S

    async def start(self) -> None:
        self._loops = [asyncio.create_task(self._listen_forever(), name="events-listen"),
                       asyncio.create_task(self._send_forever(), name="events-send")]
        await self._tried.wait()

    async def close(self) -> None:
        """Send what is pending (for at most a second), then stop listening and sending."""
        self._closing = True
        self._outbox.set()
        if self._loops:
            await asyncio.wait(self._loops[1:], timeout=CLOSE_FLUSH_S)  # the sender
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        self._listening = False

    # The three notifications: here at once, elsewhere through the sender -------------------

    def work_available(self) -> None:
        super().work_available()
        self._work = True
        self._outbox.set()

    def delivery_queued(self) -> None:
        super().delivery_queued()
        self._deliveries = True
        self._outbox.set()

    def task_changed(self, task_id: str, progress: Progress | None = None) -> None:
        super().task_changed(task_id, progress)
        self._tasks[task_payload(task_id, progress)] = None
        self._outbox.set()

    # Sending ------------------------------------------------------------------------------------

    def _pending(self) -> bool:
        return self._work or self._deliveries or bool(self._tasks)

    def _take(self) -> list[tuple[str, str]]:
        batch = [(WORK, "")] if self._work else []
        batch += [(DELIVERIES, "")] if self._deliveries else []
        batch += [(TASK, payload) for payload in self._tasks]
        self._work = self._deliveries = False
        self._tasks = {}
        return batch

    def _put_back(self, batch: list[tuple[str, str]]) -> None:
        """Keep an unsent batch, before what was announced since (the order of a task's
        progress notes is kept)."""
        self._work = self._work or (WORK, "") in batch
        self._deliveries = self._deliveries or (DELIVERIES, "") in batch
        kept = dict.fromkeys(payload for channel, payload in batch if channel == TASK)
        self._tasks = {**kept, **self._tasks}

    async def _send_forever(self) -> None:
        conn: psycopg.AsyncConnection[TupleRow] | None = None
        failures = 0
        try:
            while not (self._closing and not self._pending()):
                await self._outbox.wait()
                self._outbox.clear()
                batch = self._take()
                if not batch:
                    continue
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect()
                        self._sender_pid = conn.info.backend_pid
                    await conn.execute(NOTIFY, ([c for c, _ in batch], [p for _, p in batch]))
                    failures = 0
                except psycopg.Error as exc:
                    self._put_back(batch)
                    if self._closing:
                        return
                    failures += 1
                    log.warning("cannot send task events (%s); other processes poll meanwhile",
                                exc)
                    await _closed(conn)
                    conn = None
                    await asyncio.sleep(self._backoff(failures))
                    self._outbox.set()
        finally:
            await _closed(conn)

    # Listening ----------------------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            conn = None
            try:
                conn = await self._connect()
                for channel in CHANNELS:
                    await conn.execute(f"LISTEN {channel}".encode())
                if failures:
                    self._wake_everything()
                failures = 0
                self._listening = True
                self._tried.set()
                await self._receive(conn)
            except psycopg.Error as exc:
                failures += 1
                log.warning("not listening for task events (%s); retrying, workers poll "
                            "meanwhile", exc)
            finally:
                self._listening = False
                self._tried.set()
                await _closed(conn)
            await asyncio.sleep(self._backoff(failures))

    async def _receive(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        """Until the connection fails: each notification to its local signal or waiters."""
        while True:
            async for note in conn.notifies(timeout=HEALTH_CHECK_S):
                if note.pid == self._sender_pid:
                    continue  # ours: woken when it was sent
                if note.channel == WORK:
                    self.work.set()
                elif note.channel == DELIVERIES:
                    self.deliveries.set()
                elif note.channel == TASK:
                    TaskEvents.task_changed(self, *parse_task_payload(note.payload))
            await conn.execute(b"SELECT 1")  # quiet for a while: is the connection alive?

    def _wake_everything(self) -> None:
        self.work.set()
        self.deliveries.set()
        for task_id in list(self._waiters):
            TaskEvents.task_changed(self, task_id)

    # Plumbing -----------------------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    def _backoff(self, failures: int) -> float:
        low, high = self._backoff_s
        if failures == 0:
            return low
        return random.uniform(low, min(high, low * 2 ** failures))


def task_payload(task_id: str, progress: Progress | None) -> str:
    """The ``imagegate_task`` payload of a change (a task id has no space)."""
    if progress is None:
        return task_id
    return f"{task_id} {progress.attempt} {progress.stage}"


def parse_task_payload(payload: str) -> tuple[str, Progress | None]:
    """A task id and its progress from an ``imagegate_task`` payload (a bare id, or one this
    version cannot read: a change without a note)."""
    task_id, _, rest = payload.partition(" ")
    attempt, _, stage = rest.partition(" ")
    if not (attempt.isascii() and attempt.isdigit() and stage):
        return task_id, None
    return task_id, Progress(int(attempt), stage)


async def _closed(conn: psycopg.AsyncConnection[TupleRow] | None) -> None:
    if conn is not None and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            await conn.close()

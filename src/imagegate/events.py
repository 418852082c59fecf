"""In-process task events: wake idle workers when work arrives, and let waiters observe a task
reach a terminal state without polling the database in a tight loop.

A waiter subscribes (``watch``) *before* it reads the task, then waits on its subscription: a
change that lands between the read and the wait has already set it, so none is missed.

This is the single-process implementation; a fleet on PostgreSQL uses ``PostgresEvents``
(``events_postgres.py``), the database's own notification channel behind the same methods, and
workers keep a slow poll as a fallback.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_NOTES = 16  # progress notes a watch keeps until they are taken; past that it keeps none


class Signal:
    """A wake-up call: ``set`` wakes one ``wait``, which then re-arms it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, within_s: float, stop: asyncio.Event | None = None) -> None:
        """Return when set, when ``stop`` is set, or after ``within_s`` seconds."""
        waiters = {asyncio.ensure_future(self._event.wait())}
        if stop is not None:
            waiters.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._event.clear()


@dataclass(frozen=True)
class Progress:
    """What a running task's change was, when its announcer says: attempt ``attempt`` reached
    ``stage`` (``running`` when claimed, then ``fetching``, ``generating``, ``storing``). A
    stream can show each stage from these notes even when several land before it reads."""

    attempt: int
    stage: str


class Watch:
    """A subscription to one task's changes (``TaskEvents.watch``), with the progress notes
    that came with them, in order, until taken (``take_notes``)."""

    __slots__ = ("_changed", "_notes", "_unexplained")

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._notes: list[Progress] = []
        self._unexplained = False  # a change came without a note, or notes were dropped

    def set(self, progress: Progress | None = None) -> None:
        if progress is None:
            self._unexplained = True
        elif len(self._notes) >= MAX_NOTES:  # nobody takes them
            self._notes.clear()
            self._unexplained = True
        else:
            self._notes.append(progress)
        self._changed.set()

    def take_notes(self) -> tuple[list[Progress], bool]:
        """The progress notes of the changes since the last call, oldest first, and whether
        some change came without one (or more came than a watch keeps): then only a read of
        the task, after the notes, tells what it is now."""
        notes, unexplained = self._notes, self._unexplained
        self._notes, self._unexplained = [], False
        return notes, unexplained

    async def wait(self, within_s: float) -> bool:
        """True when the task changed since the watch began or the last ``wait`` that returned
        True; False after ``within_s`` seconds without a change."""
        try:
            await asyncio.wait_for(self._changed.wait(), within_s)
        except TimeoutError:
            return False
        self._changed.clear()
        return True


class TaskEvents:
    """Wake-ups within one process. ``start`` and ``close`` do nothing here; they are there so
    a process starts and closes whichever events it was given the same way.

    ``recheck_s``: how often a waiter should read its task again in case another process
    changed it without an event reaching this one (processes sharing one SQLite file); None
    when every change arrives as an event (one process alone, or a database that notifies)."""

    def __init__(self, *, recheck_s: float | None = None) -> None:
        self.work = Signal()  # a task may be ready to claim
        self.deliveries = Signal()  # a callback delivery was queued
        self._waiters: defaultdict[str, set[Watch]] = defaultdict(set)
        self._recheck_s = recheck_s

    @property
    def recheck_s(self) -> float | None:
        return self._recheck_s

    @property
    def watching(self) -> int:
        """How many subscriptions are open now (every waiting client holds one)."""
        return sum(len(watches) for watches in self._waiters.values())

    async def start(self) -> None:
        """Begin receiving other processes' events (none here)."""

    async def close(self) -> None:
        """Stop receiving and sending events (none here)."""

    def work_available(self) -> None:
        self.work.set()

    def delivery_queued(self) -> None:
        self.deliveries.set()

    def task_changed(self, task_id: str, progress: Progress | None = None) -> None:
        """The task changed (committed already); ``progress`` says how, when it is a running
        attempt's stage."""
        for watch in self._waiters.get(task_id, ()):
            watch.set(progress)

    @contextmanager
    def watch(self, task_id: str) -> Iterator[Watch]:
        """Subscribe to the task's changes for the ``with`` block (however it ends: a waiter
        cancelled because its client went away leaves nothing behind)."""
        watch = Watch()
        self._waiters[task_id].add(watch)
        try:
            yield watch
        finally:
            watches = self._waiters.get(task_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._waiters[task_id]

    async def wait_for_change(self, task_id: str, within_s: float) -> bool:
        """True when the task changed within ``within_s`` seconds."""
        with self.watch(task_id) as watch:
            return await watch.wait(within_s)

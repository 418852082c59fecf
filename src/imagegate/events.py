"""In-process task events: wake idle workers when work arrives, and let waiters observe a task
reach a terminal state without polling the database in a tight loop.

This is the single-process implementation; a fleet on PostgreSQL uses ``PostgresEvents``
(``events_postgres.py``), the database's own notification channel behind the same methods, and
workers keep a slow poll as a fallback.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


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


class TaskEvents:
    """Wake-ups within one process. ``start`` and ``close`` do nothing here; they are there so
    a process starts and closes whichever events it was given the same way."""

    def __init__(self) -> None:
        self.work = Signal()  # a task may be ready to claim
        self.deliveries = Signal()  # a callback delivery was queued
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    async def start(self) -> None:
        """Begin receiving other processes' events (none here)."""

    async def close(self) -> None:
        """Stop receiving and sending events (none here)."""

    def work_available(self) -> None:
        self.work.set()

    def delivery_queued(self) -> None:
        self.deliveries.set()

    def task_changed(self, task_id: str) -> None:
        for event in self._waiters.pop(task_id, ()):
            event.set()

    async def wait_for_change(self, task_id: str, within_s: float) -> bool:
        """True when the task changed within ``within_s`` seconds."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        try:
            await asyncio.wait_for(event.wait(), within_s)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

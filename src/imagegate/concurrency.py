"""Small asyncio helpers shared by the routes, the router and the fetcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


async def all_or_cancel(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``calls`` concurrently; results in order. The first failure cancels the others
    (and waits for them to end) and is raised as itself, not as a group."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Slots:
    """At most ``limits[name]`` holders of each ``name`` at once, in this process; a name
    without a limit admits any number. A holder past the limit waits (first come, first
    served) until one leaves."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        bad = {name: n for name, n in limits.items() if n < 1}
        if bad:
            raise ValueError(f"a limit must be at least 1: {bad}")
        self.limits = dict(limits)
        self._semaphores = {name: asyncio.Semaphore(n) for name, n in limits.items()}
        self._held: dict[str, int] = {}
        self._waiting: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """One slot of ``name`` for the body of the ``async with``."""
        semaphore = self._semaphores.get(name)
        if semaphore is None:
            yield
            return
        self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            await semaphore.acquire()
        finally:
            self._waiting[name] -= 1
        self._held[name] = self._held.get(name, 0) + 1
        try:
            yield
        finally:
            self._held[name] -= 1
            semaphore.release()

    def held(self, name: str) -> int:
        """Slots of ``name`` held now (0 for a name without a limit)."""
        return self._held.get(name, 0)

    def waiting(self, name: str) -> int:
        """Holders of ``name`` waiting for a slot now."""
        return self._waiting.get(name, 0)

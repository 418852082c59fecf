"""Routes that prepare themselves (``StartingRoute``: a model to load) are started by the
runtime before its worker claims a task; one that cannot start stops the process instead."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from imagegate.blobs.memory import MemoryBlobStore
from imagegate.bootstrap import build_runtime, open_seams, prepare_database
from imagegate.config import Settings
from imagegate.errors import ConfigError
from imagegate.routes.base import GeneratedImage, Job, StartingRoute
from imagegate.routes.sandbox import SandboxRoute
from imagegate.store.memory import MemoryStore
from imagegate.tasks import Task


class Loading(SandboxRoute):
    """The sandbox, with a start that records the order of events (or fails)."""

    def __init__(self, events: list[str], fail: bool = False) -> None:
        super().__init__(delay_s=0)
        self.events = events
        self.fail = fail

    async def start(self) -> None:
        if self.fail:
            raise ConfigError("routes.sandbox.model: cannot load")
        self.events.append("started")

    async def generate(self, job: Job) -> Sequence[GeneratedImage]:
        self.events.append("generate")
        return await super().generate(job)


class Watched(MemoryStore):
    """The memory store, recording each claim."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.claimed = asyncio.Event()

    async def claim_tasks(self, worker_id: str, now_ms: int, lease_ms: int, limit: int,
                          models: Sequence[str] | None = None) -> list[Task]:
        self.events.append("claim")
        self.claimed.set()
        return await super().claim_tasks(worker_id, now_ms, lease_ms, limit, models)


async def start_runtime(route: Loading, events: list[str]) -> None:
    store = Watched(events)
    seams = open_seams(Settings.load(env={}, database_url="memory:"), store=store,
                       blobs=MemoryBlobStore())
    await prepare_database(store, upgrade=True)
    runtime = build_runtime(seams, sweep=False, deliver=False, routes={"sandbox": route})
    try:
        await runtime.start()
        await store.claimed.wait()
    finally:
        await runtime.stop(1.0)
        await seams.close()


def test_a_starting_route_starts_before_the_worker_claims_anything() -> None:
    events: list[str] = []
    route = Loading(events)
    assert isinstance(route, StartingRoute)
    asyncio.run(asyncio.wait_for(start_runtime(route, events), 10))
    assert events[0] == "started" and "claim" in events


def test_a_route_that_cannot_start_stops_the_runtime_before_any_claim() -> None:
    events: list[str] = []
    with pytest.raises(ConfigError, match="cannot load"):
        asyncio.run(asyncio.wait_for(start_runtime(Loading(events, fail=True), events), 10))
    assert events == []

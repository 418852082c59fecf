"""A database that cannot be written (a full disk) and result storage that is full, through the
real app in-process over HTTP on a real SQLite database.

Two ways to make SQLite refuse writes: ``fill`` caps the database at its size and fills its free
pages (``PRAGMA max_page_count``), so a write that needs a new page fails with SQLITE_FULL,
"database or disk is full", exactly as on a full disk; ``refuse_writes`` makes the writer's
connection read-only, so every write fails, even one that would fit in a page already there
(the acceptance test tests/acceptance/test_full_disk.py fills a real file system)."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate import accounts
from imagegate.api.app import create_app
from imagegate.blobs.local import LocalBlobStore
from imagegate.bootstrap import Api, build_api, build_runtime, open_seams
from imagegate.clock import SystemClock
from imagegate.config import Settings
from imagegate.errors import StorageFull, StoreUnavailable
from imagegate.store.sqlite import SqliteStore

SUBMIT = "/api/v1/generateTask/nano-banana-2"
BODY = {"input": {"mode": "text-to-image", "prompt": "a fox", "aspect_ratio": "1:1",
                  "resolution": "1k"}}
UNCAPPED = 1_073_741_823


def settings(tmp_path: Path, **changes: Any) -> Settings:
    fast = {"sandbox_delay_seconds": 0.0, "worker_poll_seconds": 0.05,
            "sweeper_interval_seconds": 0.1, "worker_lease_seconds": 1.0,
            "worker_retry_backoff_seconds": 0.05}
    return Settings.load(env={}, data_dir=str(tmp_path), **{**fast, **changes})


@asynccontextmanager
async def app_client(config: Settings, blobs: LocalBlobStore | None = None,
                     ) -> AsyncIterator[tuple[Api, httpx.AsyncClient, str]]:
    def build(settings: Settings) -> Api:
        seams = open_seams(settings, blobs=blobs)
        return build_api(seams, build_runtime(seams))

    app = create_app(config, build=build)
    async with app.router.lifespan_context(app):
        svc: Api = app.state.api
        key = await accounts.create_key(svc.seams.store, SystemClock(), credit_micros=1_000_000)
        headers = {"Authorization": f"Bearer {key.plain}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://imagegate.test", headers=headers) as c:
            yield svc, c, key.account.id


async def fill(store: Any) -> None:
    """Cap the database at its size, then fill its free pages: from now on every write that
    needs room fails with SQLITE_FULL, as on a full disk."""
    def cap(conn: Any) -> None:
        count = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {count}")

    await store._writer.run(cap)
    for n in range(10_000):
        try:
            await store._writer.run(lambda conn, n=n: conn.execute(
                "INSERT INTO store_probe (id, filler) VALUES (?, ?)", (1000 + n, "f" * 512)))
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)
            return
    raise AssertionError("the capped database never filled up")


async def refuse_writes(store: Any, refuse: bool = True) -> None:
    """Make every connection of the store read-only (or writable again). SQLite's connections
    are serialized, so setting them from this thread is safe."""
    if refuse and not store._conns:
        await store.ping()
    for conn in list(store._conns):
        conn.execute(f"PRAGMA query_only = {int(refuse)}")


async def lift(store: Any) -> None:
    """Space comes back: the cap goes and the filler is deleted."""
    def run(conn: Any) -> None:
        conn.execute(f"PRAGMA max_page_count = {UNCAPPED}")
        conn.execute("DELETE FROM store_probe")

    await store._writer.run(run)


async def balance(c: httpx.AsyncClient) -> float:
    return float((await c.get("/api/v1/apikeys/current-balance")).json()["data"])


async def wait_state(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            data: dict[str, Any] = (await c.get("/api/v1/statusTask/nano-banana-2",
                                                 params={"taskId": task_id})).json()["data"]
            if data["state"] != "processing":
                return data
            await asyncio.sleep(0.05)


def test_a_submit_the_database_cannot_take_is_503_and_charges_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with app_client(settings(tmp_path)) as (svc, c, _):
            before = await balance(c)
            await refuse_writes(svc.seams.store)
            refused = [await c.post(SUBMIT, json=BODY) for _ in range(3)]
            ready = await c.get("/readyz")
            assert await balance(c) == before
            await refuse_writes(svc.seams.store, False)
            again = await c.post(SUBMIT, json=BODY)
            ready_again = await c.get("/readyz")
            done = await wait_state(c, again.json()["data"]["taskId"])
        for r in refused:
            assert r.status_code == 503, r.text
            assert r.json()["code"] == 503 and int(r.headers["retry-after"]) >= 1
            assert "cannot store data right now" in r.json()["data"]["error"]
            assert "Traceback" not in r.text and "sqlite" not in r.text.lower()
        assert ready.status_code == 503
        assert again.status_code == 200 and ready_again.status_code == 200
        assert done["state"] == "success"

    asyncio.run(scenario())


def test_readiness_follows_the_disk_without_any_traffic(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with app_client(settings(tmp_path)) as (svc, c, _):
            await refuse_writes(svc.seams.store)
            assert (await c.post(SUBMIT, json=BODY)).status_code == 503
            for _ in range(3):  # the probe itself keeps failing while writes are refused
                assert (await c.get("/readyz")).status_code == 503
            await refuse_writes(svc.seams.store, False)  # no write comes in: the probe finds it
            assert (await c.get("/readyz")).status_code == 200

    asyncio.run(scenario())


def test_a_write_that_changes_nothing_does_not_make_a_full_database_ready(
        tmp_path: Path) -> None:
    unlimited = settings(tmp_path, limits_submit_burst=1000, limits_submit_rate=1000.0)

    async def scenario() -> None:
        async with app_client(unlimited) as (svc, c, _):
            await fill(svc.seams.store)
            # The pages already there take a few submits; then the database is full.
            statuses = [(await c.post(SUBMIT, json=BODY)).status_code for _ in range(60)]
            assert statuses[-1] == 503, statuses
            # A sweep that finds nothing to do commits on a full disk as well.
            assert not await svc.seams.store.renew_lease("no-such-task", 1, 0)
            assert (await c.get("/readyz")).status_code == 503
            assert (await c.post(SUBMIT, json=BODY)).status_code == 503
            await lift(svc.seams.store)
            assert (await c.get("/readyz")).status_code == 200

    asyncio.run(scenario())


def test_a_task_whose_bookkeeping_cannot_be_written_recovers_once_space_returns(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with app_client(settings(tmp_path, sandbox_delay_seconds=0.5)) as (svc, c, _):
            task_id = (await c.post(SUBMIT, json=BODY)).json()["data"]["taskId"]
            await asyncio.sleep(0.1)  # running: its finish will find the database closed
            await refuse_writes(svc.seams.store)
            await asyncio.sleep(1.5)
            assert (await c.get("/api/v1/statusTask/nano-banana-2",
                                params={"taskId": task_id})).json()["data"]["state"] == \
                "processing"
            await refuse_writes(svc.seams.store, False)
            done = await wait_state(c, task_id)
            assert done["state"] == "success", done
            assert await balance(c) == pytest.approx(0.95)

    asyncio.run(scenario())


class FullBlobs(LocalBlobStore):
    """A local directory on a device with no space left: every write fails with ENOSPC."""

    full = True

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        if FullBlobs.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        LocalBlobStore._put(path, data)


def test_results_that_find_no_space_fail_the_task_as_storage_full_and_refund(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        blobs = FullBlobs(tmp_path / "results")
        async with app_client(settings(tmp_path), blobs=blobs) as (_, c, _):
            task_id = (await c.post(SUBMIT, json=BODY)).json()["data"]["taskId"]
            failed = await wait_state(c, task_id)
            assert await balance(c) == 1.0
            FullBlobs.full = False
            ok = await wait_state(c, (await c.post(SUBMIT, json=BODY)).json()["data"]["taskId"])
        assert failed["state"] == "failed" and failed["failCode"] == "Unknown error"
        assert failed["failMsg"].startswith("storage full:")
        assert "OSError" not in failed["failMsg"] and str(tmp_path) not in failed["failMsg"]
        assert ok["state"] == "success"

    FullBlobs.full = True
    asyncio.run(scenario())


def test_local_blobs_raise_storage_full_and_keep_no_partial_file(tmp_path: Path) -> None:
    blobs = FullBlobs(tmp_path)
    FullBlobs.full = True
    with pytest.raises(StorageFull, match="no space left"):
        asyncio.run(blobs.put("t/1/image-0.png", b"x" * 10, "image/png"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_store_names_a_full_disk_and_keeps_nothing_of_the_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "db.sqlite")
        await store.migrate()
        await fill(store)
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            await store.create_account("acct_x", "x" * 20000, 1)
        with pytest.raises(StoreUnavailable):
            await store.ping()
        await lift(store)
        await store.ping()
        assert await store.get_account("acct_x") is None
        await store.close()

    asyncio.run(scenario())

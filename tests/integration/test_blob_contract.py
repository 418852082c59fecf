"""The blob contract (blobs/base.py): every blob store passes this file unchanged. Add a param to
the ``blobs`` fixture for each new store. S3 runs on moto's server over real HTTP, addressed
path-style and virtual-hosted (``tests/s3server.py``), in a new bucket per test.

Each test is a scenario the fixture runs in one event loop, on a store it opens for it and
closes after (an S3 store's connections belong to the loop that opened them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from s3server import MotoS3, ToLoopback

from imagegate.blobs.base import BlobStore, result_key, task_prefix
from imagegate.blobs.local import LocalBlobStore
from imagegate.blobs.memory import MemoryBlobStore

Scenario = Callable[[BlobStore], Awaitable[None]]
Run = Callable[[Scenario], None]


@pytest.fixture(params=["local", "memory", "s3-path", "s3-virtual"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    moto: MotoS3 | None = request.getfixturevalue("moto") if "s3" in request.param else None

    def make() -> BlobStore:
        if request.param == "local":
            return LocalBlobStore(tmp_path / "results")
        if moto is None:
            return MemoryBlobStore()
        style = "path" if request.param == "s3-path" else "virtual"
        return moto.store(moto.new_bucket(), style, prefix="imagegate/")

    def run(scenario: Scenario) -> None:
        async def go() -> None:
            store = make()
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(go())
    return run


async def read(store: BlobStore, key: str, chunk_size: int = 256 * 1024) -> bytes | None:
    blob = await store.open(key, chunk_size)
    if blob is None:
        return None
    chunks = [chunk async for chunk in blob.chunks]
    assert sum(map(len, chunks)) == blob.size
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    return b"".join(chunks)


def test_a_blob_reads_back_whole_and_in_chunks(blobs: Run) -> None:
    data = bytes(range(256)) * 1000
    key = result_key("t1", 1, 0, "png")

    @blobs
    async def _(store: BlobStore) -> None:
        await store.put(key, data, "image/png")
        assert await read(store, key) == data
        assert await read(store, key, chunk_size=1000) == data


def test_put_replaces_a_blob_whole(blobs: Run) -> None:
    key = result_key("t1", 1, 0, "png")

    @blobs
    async def _(store: BlobStore) -> None:
        await store.put(key, b"x" * 5000, "image/png")
        await store.put(key, b"short", "image/png")
        assert await read(store, key) == b"short"


def test_an_opened_blob_reads_the_bytes_it_was_opened_with(blobs: Run) -> None:
    key = result_key("t1", 1, 0, "png")

    @blobs
    async def _(store: BlobStore) -> None:
        await store.put(key, b"old" * 1000, "image/png")
        blob = await store.open(key, chunk_size=100)
        assert blob is not None and blob.size == 3000
        first = await anext(blob.chunks)
        await store.put(key, b"new", "image/png")
        rest = b"".join([chunk async for chunk in blob.chunks])
        assert first + rest == b"old" * 1000
        assert await read(store, key) == b"new"


def test_a_blob_closed_unread_releases_what_it_held(blobs: Run) -> None:
    # An unclosed file or connection would surface as a ResourceWarning: an error here.
    key = result_key("t1", 1, 0, "png")

    @blobs
    async def _(store: BlobStore) -> None:
        await store.put(key, b"data" * 1000, "image/png")
        for _ in range(3):
            blob = await store.open(key)
            assert blob is not None
            await blob.close()
            await blob.close()  # twice is fine
        assert await read(store, key) == b"data" * 1000


def test_a_missing_blob_opens_as_none(blobs: Run) -> None:
    @blobs
    async def _(store: BlobStore) -> None:
        assert await store.open(result_key("nope", 1, 0, "png")) is None


def test_deleting_a_task_prefix_deletes_its_blobs_and_no_other(blobs: Run) -> None:
    @blobs
    async def _(store: BlobStore) -> None:
        for task, attempt, index in [("t1", 1, 0), ("t1", 2, 0), ("t1", 2, 1), ("t10", 1, 0)]:
            await store.put(result_key(task, attempt, index, "png"), b"data", "image/png")
        assert await store.delete_prefix(task_prefix("t1")) == 3
        assert await store.open(result_key("t1", 2, 1, "png")) is None
        assert await read(store, result_key("t10", 1, 0, "png")) == b"data"
        assert await store.delete_prefix(task_prefix("t1")) == 0


def test_a_presigned_url_serves_the_blob_or_there_is_none(blobs: Run) -> None:
    key = result_key("t1", 1, 0, "png")

    @blobs
    async def _(store: BlobStore) -> None:
        await store.put(key, b"\x89PNG bytes", "image/png")
        url = await store.presigned_url(key, 60)
        if isinstance(store, (LocalBlobStore, MemoryBlobStore)):
            assert url is None  # the API serves these itself
            return
        assert url is not None and "X-Amz-Expires=60&" in url
        async with httpx.AsyncClient(transport=ToLoopback()) as anyone:
            got = await anyone.get(url)  # no credentials: the URL carries the signature
        assert got.status_code == 200 and got.content == b"\x89PNG bytes"
        assert got.headers["content-type"] == "image/png"


@pytest.mark.parametrize("key", ["../outside.png", "results/../../outside.png", "/outside.png",
                                 "results/./../outside.png"])
def test_a_key_may_not_escape_the_store(blobs: Run, key: str) -> None:
    @blobs
    async def _(store: BlobStore) -> None:
        with pytest.raises(ValueError, match="escapes"):
            await store.put(key, b"x", "image/png")

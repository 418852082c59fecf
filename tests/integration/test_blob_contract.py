"""The blob contract (blobs/base.py): every blob store passes this file unchanged. Add a param to
the ``blobs`` fixture for each new store."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from imagegate.blobs.base import BlobStore, result_key, task_prefix
from imagegate.blobs.local import LocalBlobStore
from imagegate.blobs.memory import MemoryBlobStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(params=["local", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    store: BlobStore = LocalBlobStore(tmp_path / "results") if request.param == "local" \
        else MemoryBlobStore()
    yield store
    run(store.close())


async def read(blobs: BlobStore, key: str, chunk_size: int = 256 * 1024) -> bytes:
    return b"".join([chunk async for chunk in blobs.stream(key, chunk_size)])


def test_a_blob_reads_back_whole_and_in_chunks(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 1000
    key = result_key("t1", 1, 0, "png")

    async def scenario() -> None:
        await blobs.put(key, data, "image/png")
        assert await blobs.size(key) == len(data)
        assert await read(blobs, key) == data
        assert await read(blobs, key, chunk_size=1000) == data

    run(scenario())


def test_put_replaces_a_blob_whole(blobs: BlobStore) -> None:
    key = result_key("t1", 1, 0, "png")

    async def scenario() -> None:
        await blobs.put(key, b"x" * 5000, "image/png")
        await blobs.put(key, b"short", "image/png")
        assert await blobs.size(key) == 5 and await read(blobs, key) == b"short"

    run(scenario())


def test_a_missing_blob_has_no_size(blobs: BlobStore) -> None:
    assert run(blobs.size(result_key("nope", 1, 0, "png"))) is None


def test_deleting_a_task_prefix_deletes_its_blobs_and_no_other(blobs: BlobStore) -> None:
    async def scenario() -> None:
        for task, attempt, index in [("t1", 1, 0), ("t1", 2, 0), ("t1", 2, 1), ("t10", 1, 0)]:
            await blobs.put(result_key(task, attempt, index, "png"), b"data", "image/png")
        assert await blobs.delete_prefix(task_prefix("t1")) == 3
        assert await blobs.size(result_key("t1", 2, 1, "png")) is None
        assert await blobs.size(result_key("t10", 1, 0, "png")) == 4
        assert await blobs.delete_prefix(task_prefix("t1")) == 0

    run(scenario())


@pytest.mark.parametrize("key", ["../outside.png", "results/../../outside.png"])
def test_a_key_may_not_escape_the_store(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="escapes"):
        run(blobs.put(key, b"x", "image/png"))

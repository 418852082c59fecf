"""Result downloads: the unguessable URL of a task's image, until its retention ends."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from imagegate.blobs.base import BlobStore
from imagegate.clock import Clock
from imagegate.errors import Gone, NotFound
from imagegate.store.base import Store
from imagegate.tasks import ResultFile, TaskState


@dataclass
class ResultDownload:
    file: ResultFile
    chunks: AsyncIterator[bytes]


class Files:
    def __init__(self, store: Store, blobs: BlobStore, clock: Clock) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock

    async def result(self, task_id: str, token: str, name: str) -> ResultDownload:
        """The file ``name`` of a succeeded task whose token matches: ``NotFound`` for anything
        else, ``Gone`` past its retention."""
        task = await self.store.get_task(task_id)
        # Bytes: compare_digest refuses str with non-ASCII characters, which a URL may hold.
        if task is None or not secrets.compare_digest(task.result_token.encode(),
                                                      token.encode()):
            raise NotFound("no such result")
        file = next((r for r in task.results if r.name == name), None)
        if file is None or task.state is not TaskState.SUCCEEDED:
            raise NotFound("no such result")
        if task.expire_ms is not None and self.clock.now_ms() >= task.expire_ms:
            raise Gone("this result has expired and was deleted")
        if await self.blobs.size(file.key) is None:
            raise Gone("this result has expired and was deleted")
        return ResultDownload(file, self.blobs.stream(file.key))

"""The blob-storage seam for result files. Implementations: ``blobs.local.LocalBlobStore``
(embedded default); an S3-compatible store implements the same protocol.

Keys are deterministic per task, attempt and image (``results/<task id>/<attempt>/<n>.<ext>``):
a re-run overwrites its own files instead of leaking new ones, and an attempt that lost its lease
cannot overwrite the files of the attempt that won. Everything of a task is under one prefix,
deleted when its retention ends. ``put`` is atomic: a reader sees the old
bytes or the new, never a part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any blob there. Raises ``StorageFull`` when no
        space is left (and keeps nothing of it)."""
        ...

    async def size(self, key: str) -> int | None:
        """Size in bytes, or None when there is no such blob."""
        ...

    def stream(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many went."""
        ...

    async def close(self) -> None: ...


def result_key(task_id: str, attempt: int, index: int, extension: str) -> str:
    return f"results/{task_id}/{attempt}/{index}.{extension}"


def task_prefix(task_id: str) -> str:
    return f"results/{task_id}/"

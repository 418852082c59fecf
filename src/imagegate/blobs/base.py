"""The blob-storage seam for result files. Implementations: ``blobs.local.LocalBlobStore``
(embedded default), ``blobs.s3.S3BlobStore`` (any S3-compatible service) and
``blobs.memory.MemoryBlobStore`` (tests).

Keys are deterministic per task, attempt and image (``results/<task id>/<attempt>/<n>.<ext>``):
a re-run overwrites its own files instead of leaking new ones, and an attempt that lost its lease
cannot overwrite the files of the attempt that won. Everything of a task is under one prefix,
deleted when its retention ends. ``put`` is atomic: a reader sees the old
bytes or the new, never a part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

CHUNK_SIZE = 256 * 1024


@dataclass(frozen=True)
class OpenBlob:
    """A blob opened for reading by one storage request: its size in bytes and its bytes, in
    chunks of at most the size asked for. Reading ``chunks`` to the end releases what the blob
    holds open (a file, a connection); a reader that stops early calls ``close`` (which may be
    called more than once)."""

    size: int
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any blob there. Raises ``StorageFull`` when no
        space is left (and keeps nothing of it), ``StorageUnavailable`` when the storage cannot
        be reached or refuses."""
        ...

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> OpenBlob | None:
        """The blob under ``key`` opened for reading, or None when there is none; its size and
        bytes come from one request, so they belong to the same version of the blob. Nothing is
        read into memory before the chunks are asked for."""
        ...

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL anyone may GET the blob from for ``expires_s`` seconds (the caller bounds it
        by the result's retention), or None when this store cannot hand out such URLs (the API
        then serves the bytes itself). Makes no request: the blob may be gone."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many went."""
        ...

    async def close(self) -> None: ...


def result_key(task_id: str, attempt: int, index: int, extension: str) -> str:
    return f"results/{task_id}/{attempt}/{index}.{extension}"


def task_prefix(task_id: str) -> str:
    return f"results/{task_id}/"

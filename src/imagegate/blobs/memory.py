"""``MemoryBlobStore``: result files in a dict, for tests and experiments. Nothing survives the
process; ``put`` replaces a blob whole, as the protocol asks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from imagegate.blobs.base import CHUNK_SIZE, OpenBlob

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}  # key -> (bytes, content type)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"blob key {key!r} escapes the storage")
        self.blobs[key] = (bytes(data), content_type)

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> OpenBlob | None:
        found = self.blobs.get(key)
        if found is None:
            return None
        data = found[0]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), chunk_size):
                yield data[start:start + chunk_size]

        async def close() -> None:
            return None

        return OpenBlob(len(data), chunks(), close)

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        return None

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self.blobs if key.startswith(prefix)]
        for key in doomed:
            del self.blobs[key]
        return len(doomed)

    async def close(self) -> None:
        return None

"""Result files in a local directory. Writes go to a temporary file then ``os.replace``; a
write that finds no space left raises ``StorageFull`` and leaves no partial file."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from imagegate.blobs.base import CHUNK_SIZE, OpenBlob
from imagegate.errors import StorageFull

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        """The file of ``key``: refused (ValueError) when the key is absolute or has a ``.``
        or ``..`` part, read from the key alone. No path is resolved: that costs a system call
        per directory on every put and read, and the keys are the service's own
        (``result_key``), under a root the operator owns."""
        if key.startswith("/") or "\0" in key or any(part in (".", "..")
                                                     for part in key.split("/")):
            raise ValueError(f"blob key {key!r} escapes the storage directory")
        return self.root / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            await asyncio.to_thread(self._put, self._path(key), data)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StorageFull("no space left on the device for result files") from exc
            raise

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> OpenBlob | None:
        try:
            f = await asyncio.to_thread(open, self._path(key), "rb")
        except FileNotFoundError:
            return None
        # The size of the file opened, not of the path: a put that replaces it meanwhile
        # leaves this reader on the old bytes, whole.
        size = os.fstat(f.fileno()).st_size

        async def close() -> None:
            f.close()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(f.read, chunk_size):
                    yield chunk
            finally:
                f.close()

        return OpenBlob(size, chunks(), close)

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        return None

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        directory = self._path(prefix.rstrip("/"))
        if prefix.endswith("/") and directory.is_dir():
            count = sum(1 for p in directory.rglob("*") if p.is_file())
            shutil.rmtree(directory, ignore_errors=True)
            return count
        count = 0
        for path in directory.parent.glob(directory.name + "*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                count += 1
        return count

    async def close(self) -> None:
        return None

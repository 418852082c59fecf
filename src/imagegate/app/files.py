"""Result downloads: the unguessable URL of a task's image, until its retention ends.

The URL is always ours (``/files/{task_id}/{token}/{name}``): the token and the expiry are
checked here before anything else. Then either the bytes are streamed through the API (proxy,
the default) or, where the blob store can hand out presigned URLs and ``redirect`` is set, the
client is sent to the storage itself for a short time that never outlives the result.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from imagegate.blobs.base import BlobStore, OpenBlob
from imagegate.clock import Clock
from imagegate.errors import Gone, NotFound
from imagegate.store.base import Store
from imagegate.tasks import ResultFile, TaskState

# How long a redirect's presigned URL works at most: the client follows it at once, so it only
# needs to outlive a slow start; a shorter time also bounds a leaked URL.
REDIRECT_LIFETIME_S = 300


@dataclass(frozen=True)
class ResultStream:
    """Proxy: the bytes of ``file``, opened; the caller reads ``blob.chunks`` or closes it."""

    file: ResultFile
    blob: OpenBlob


@dataclass(frozen=True)
class ResultRedirect:
    """Redirect: ``url`` serves the bytes of ``file`` for ``expires_s`` seconds."""

    file: ResultFile
    url: str
    expires_s: int


class Files:
    def __init__(self, store: Store, blobs: BlobStore, clock: Clock, *,
                 redirect: bool = False) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.redirect = redirect

    async def result(self, task_id: str, token: str,
                     name: str) -> ResultStream | ResultRedirect:
        """The file ``name`` of a succeeded task whose token matches: ``NotFound`` for anything
        else, ``Gone`` past its retention (or when its bytes are gone). One storage request
        in proxy mode; none in redirect mode."""
        task = await self.store.get_task(task_id)
        # Bytes: compare_digest refuses str with non-ASCII characters, which a URL may hold.
        if task is None or not secrets.compare_digest(task.result_token.encode(),
                                                      token.encode()):
            raise NotFound("no such result")
        file = next((r for r in task.results if r.name == name), None)
        if file is None or task.state is not TaskState.SUCCEEDED:
            raise NotFound("no such result")
        now_ms = self.clock.now_ms()
        if task.expire_ms is not None and now_ms >= task.expire_ms:
            raise Gone("this result has expired and was deleted")
        expires_s = redirect_lifetime_s(now_ms, task.expire_ms)
        if self.redirect and expires_s >= 1:
            url = await self.blobs.presigned_url(file.key, expires_s)
            if url is not None:
                return ResultRedirect(file, url, expires_s)
        blob = await self.blobs.open(file.key)
        if blob is None:
            raise Gone("this result has expired and was deleted")
        return ResultStream(file, blob)


def redirect_lifetime_s(now_ms: int, expire_ms: int | None) -> int:
    """Whole seconds a presigned URL may work: ``REDIRECT_LIFETIME_S``, cut to what is left of
    the result's retention, rounded down. Under one second left, 0: the API serves the bytes
    itself rather than hand out a URL that would outlive the result."""
    if expire_ms is None:
        return REDIRECT_LIFETIME_S
    return max(0, min(REDIRECT_LIFETIME_S, (expire_ms - now_ms) // 1000))

"""Per-key submit rate limiting: a token bucket per API key.

``InMemoryRateLimiter`` serves one process (``serve``); ``StoreRateLimiter`` keeps the buckets
in the database, so the limit holds across every API process of a fleet (the submits that arrive
together share one small write). Both count with ``take_token``. The limit on unfinished tasks is not here: the store checks it inside the submit
transaction, where it is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from imagegate.clock import Clock


def take_token(tokens: float, elapsed_s: float, rate: float,
               burst: int) -> tuple[float, float]:
    """One request against a token bucket holding ``tokens`` ``elapsed_s`` seconds ago, refilled
    at ``rate`` per second up to ``burst``: (the tokens it holds after, the seconds to wait for
    a token, 0 when the request took one)."""
    tokens = min(float(burst), tokens + max(0.0, elapsed_s) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class BucketStore(Protocol):
    async def take_rate_token(self, key_id: str, rate: float, burst: int,
                              now_ms: int) -> float: ...


class StoreRateLimiter:
    """Buckets in the database (``Store.take_rate_token``): shared by every process."""

    def __init__(self, store: BucketStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        return await self.store.take_rate_token(key, rate, burst, self.clock.now_ms())


class RateLimiter(Protocol):
    async def acquire(self, key: str, rate: float, burst: int) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available."""
        ...


@dataclass
class _Bucket:
    tokens: float
    updated: float


class InMemoryRateLimiter:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self._now = monotonic
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now, rate, burst)
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        bucket.tokens, wait = take_token(bucket.tokens, now - bucket.updated, rate, burst)
        bucket.updated = now
        return wait

    def _forget_full(self, now: float, rate: float, burst: int) -> None:
        """Drop buckets that have refilled: they hold no state worth keeping."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= burst]
        for k in full:
            del self._buckets[k]

"""Per-key submit rate limiting: a token bucket per API key, counted by ``take_token``.

``InMemoryRateLimiter`` keeps the buckets of one process: the whole limit in ``serve``. In a
fleet it is the first gate of each API process (a process that has seen a key spend its bucket
refuses at once, before reading the body), and the limit itself is the key's bucket in the
database, taken in the submit's own transaction (``Store.insert_task``), so it holds across
every API process. The limit on unfinished tasks is checked in that transaction too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from imagegate.errors import TooManyRequests


def take_token(tokens: float, elapsed_s: float, rate: float,
               burst: int) -> tuple[float, float]:
    """One request against a token bucket holding ``tokens`` ``elapsed_s`` seconds ago, refilled
    at ``rate`` per second up to ``burst``: (the tokens it holds after, the seconds to wait for
    a token, 0 when the request took one)."""
    tokens = min(float(burst), tokens + max(0.0, elapsed_s) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


def rate_limited(rate: float, wait_s: float) -> TooManyRequests:
    return TooManyRequests(f"submit rate limit of {rate:g}/s reached", retry_after=wait_s)


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

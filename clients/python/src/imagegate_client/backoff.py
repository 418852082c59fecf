"""When to retry a request, and after how long: exponential backoff with jitter, no I/O.

Which answers are worth another try:

    connection failure      any request that is safe to repeat (reads, and submits: they carry
                            an Idempotency-Key); a cancel only when it was never sent
    429                     every request, after Retry-After when the server gives it
    500, 502, 504           requests safe to repeat
    503                     every request (the server did nothing: starting, draining, disk full)

Delays grow ``base * 2**attempt`` up to ``cap``, each drawn in [half, whole] of that (jitter, so
clients refused together do not come back together). A Retry-After longer than the delay wins;
one longer than ``max_retry_after`` is not waited for: the error is raised at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        whole = min(self.cap, self.base * 2.0 ** attempt)
        return whole / 2 + self.rng.uniform(0.0, whole / 2)

    def delay_for_status(self, attempt: int, status: int, retry_after: float | None,
                         repeatable: bool) -> float | None:
        """Seconds to wait before trying again after HTTP ``status``, or None: do not retry."""
        if attempt >= self.max_retries or not _retryable_status(status, repeatable):
            return None
        delay = self.backoff(attempt)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            delay = max(delay, retry_after)
        return delay

    def delay_for_failure(self, attempt: int, sent: bool, repeatable: bool) -> float | None:
        """Seconds to wait before trying again after no answer came (``sent``: the request may
        have reached the server), or None."""
        if attempt >= self.max_retries or (sent and not repeatable):
            return None
        return self.backoff(attempt)


def _retryable_status(status: int, repeatable: bool) -> bool:
    if status in (429, 503):
        return True
    return repeatable and status in (500, 502, 504)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds from now (either form: seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (time.time() if now is None else now)
        return max(0.0, float(seconds))
    return seconds if seconds >= 0 else None

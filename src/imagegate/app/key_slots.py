"""Places an API key holds open in one process, bounded: its event streams, its waiting
requests. Each holds a connection and some memory until it ends, so one key cannot take them
all: at most ``most`` each, or the key's limit of unfinished tasks when that is higher (a key
may follow every one of its tasks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from imagegate.store.base import ApiKey

__all__ = ["KeySlots"]


class KeySlots:
    """``max_unfinished``: the unfinished tasks a key without a limit of its own may have."""

    def __init__(self, most: int, max_unfinished: int = 0) -> None:
        self.most = most
        self.max_unfinished = max_unfinished
        self._held: Counter[str] = Counter()  # places held, by key id

    def allowed(self, key: ApiKey) -> int:
        return max(self.most, key.max_concurrent_tasks or self.max_unfinished)

    def full(self, key: ApiKey) -> bool:
        """Whether the key holds as many places as it may."""
        return self._held[key.id] >= self.allowed(key)

    def held(self, key_id: str) -> int:
        return self._held[key_id]

    def key_ids(self) -> list[str]:
        """The keys that hold a place now."""
        return list(self._held)

    @contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        """One place of the key, for the ``with`` block (however it ends)."""
        self._held[key_id] += 1
        try:
            yield
        finally:
            self._held[key_id] -= 1
            if not self._held[key_id]:
                del self._held[key_id]

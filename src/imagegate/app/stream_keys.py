"""The API keys that hold open streams in this process (``GET /api/v1/streamTask``): how many
each holds (``KeySlots``, which bounds them), and whether each is still active, read for all
of them together.

While any stream is open, one query every ``interval_s`` seconds (``Store.active_keys``) asks
which of the holding keys are still active; a key found revoked has its ``revoked`` event set,
which ends its streams (their clients reconnect to a 401). So a thousand streams cost one read
of the keys per interval, however many keys hold them, and nothing while none is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from imagegate.app.key_slots import KeySlots
from imagegate.store.base import Store

__all__ = ["KEY_RECHECK_S", "StreamKeys"]

KEY_RECHECK_S = 5.0

log = logging.getLogger("imagegate.api")


class StreamKeys:
    """``hold`` a key for the life of one of its streams; ``close`` stops the checks."""

    def __init__(self, store: Store, slots: KeySlots, *,
                 interval_s: float = KEY_RECHECK_S) -> None:
        self.store = store
        self.slots = slots
        self.interval_s = interval_s
        self._revoked: dict[str, asyncio.Event] = {}  # of the keys holding streams
        self._checking: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def hold(self, key_id: str) -> Iterator[asyncio.Event]:
        """One stream of the key for the ``with`` block; the event is set once the key is
        found revoked."""
        with self.slots.hold(key_id):
            revoked = self._revoked.setdefault(key_id, asyncio.Event())
            if self._checking is None or self._checking.done():
                self._checking = asyncio.create_task(self._check())
            try:
                yield revoked
            finally:
                if self.slots.held(key_id) == 1:  # the key's last stream ends
                    del self._revoked[key_id]

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking

    async def _check(self) -> None:
        """Every ``interval_s`` while keys are held: one read of all of them."""
        while self._revoked:
            await asyncio.sleep(self.interval_s)
            key_ids = list(self._revoked)
            if not key_ids:
                break
            try:
                active = await self.store.active_keys(key_ids)
            except Exception:  # the next round tries again; streams go on meanwhile
                log.warning("reading the keys of open streams failed", exc_info=True)
                continue
            for key_id in key_ids:
                revoked = self._revoked.get(key_id)
                if revoked is not None and key_id not in active:
                    revoked.set()

"""Hearing that the process is asked to stop before the ASGI server says so.

The ASGI server (granian) stops accepting on SIGTERM or SIGINT, then waits for every open
answer to end before it runs the lifespan's shutdown: an event stream, which ends only when its
task does, would hold the process (and its shutdown) for as long as the stream may last, and a
waiting request for up to its 60 s. So the lifespan also listens for those signals itself,
beside the server's own handler, and ends the streams and the waits at once; their clients
reconnect, to another process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["on_termination"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_termination(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on the running event loop when the process gets SIGTERM or SIGINT,
    then whatever handled the signal before (an event loop's own handlers keep working: they
    are reached through the loop's wakeup file descriptor, not the Python-level handler).
    Returns a function that puts the previous handlers back. Outside the main thread, where
    no signal handler can be set, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # what would have happened: the process ends
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, before in previous.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, before)

    return restore

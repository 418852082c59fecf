"""What ``imagegate generate`` shows while it waits for a task.

``ProgressRenderer`` is pure: it turns the task's state (a ``Progress`` of the client SDK, or
anything with the same attributes) and the elapsed time into the text to write. On a terminal
that is one line, redrawn in place (``\\r`` and erase-to-end-of-line) with a spinner and a
running clock; elsewhere (a pipe, a file, a CI log) it is a plain line each time the state,
stage or queue position changes, and nothing between changes.

``LiveProgress`` writes what the renderer gives to a stream; on a terminal a small thread redraws
the line every ``interval`` seconds so the clock runs while nothing changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

ERASE_LINE = "\r\x1b[K"
SPINNER_UNICODE = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_ASCII = "|/-\\"

_STAGE_WORDS = {
    "queued": "queued",
    "running": "running",
    "fetching": "fetching references",
    "generating": "generating",
    "storing": "storing",
    "retrying": "waiting to retry",
    "done": "done",
}


class ProgressLike(Protocol):
    """The attributes of ``imagegate_client.Progress`` the display reads."""

    @property
    def state(self) -> str: ...

    @property
    def stage(self) -> str | None: ...

    @property
    def queue_position(self) -> int | None: ...


def describe(state: str, stage: str | None, queue_position: int | None) -> str:
    """A task's state in a few words: ``queued, position 3 in line``, ``generating``,
    ``processing`` (a server that reports no stages)."""
    if state == "success":
        return "succeeded"
    if state == "failed":
        return "failed"
    words = _STAGE_WORDS.get(stage, stage) if stage else state
    if queue_position is not None and stage in ("queued", "retrying", None):
        words += f", position {queue_position} in line"
    return words


def format_elapsed(seconds: float) -> str:
    """``4.2s``, ``1m05s``, ``2h03m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class ProgressRenderer:
    """The text of the progress display; holds the last state seen, never writes."""

    def __init__(self, *, tty: bool, width: int = 80, unicode: bool = True) -> None:
        self.tty = tty
        self.width = max(20, width)
        self.spinner = SPINNER_UNICODE if unicode else SPINNER_ASCII
        self.phrase = ""
        self._frame = 0
        self._drawn = False

    def submitted(self, task_id: str, model: str) -> str:
        """The first, permanent line: which task to look for."""
        return f"task {task_id} submitted ({model})\n"

    def update(self, progress: ProgressLike, elapsed_s: float) -> str:
        """Text for a state the SDK reported: on a terminal the redrawn line; otherwise a
        plain line when the words changed, else nothing."""
        phrase = describe(progress.state, progress.stage, progress.queue_position)
        changed = phrase != self.phrase
        self.phrase = phrase
        if self.tty:
            return self._line(elapsed_s)
        if progress.state in ("success", "failed"):  # the command's last line says so
            return ""
        return f"{format_elapsed(elapsed_s):>7}  {phrase}\n" if changed else ""

    def note(self, phrase: str, elapsed_s: float) -> str:
        """A step of the client's own (``downloading 2 images``), shown like a state."""
        self.phrase = phrase
        return self._line(elapsed_s) if self.tty else f"{format_elapsed(elapsed_s):>7}  {phrase}\n"

    def tick(self, elapsed_s: float) -> str:
        """On a terminal, the line again with the clock moved on; elsewhere nothing."""
        if not self.tty or not self.phrase:
            return ""
        self._frame += 1
        return self._line(elapsed_s)

    def clear(self) -> str:
        """Remove the live line (before an error message, or at the end)."""
        if not self._drawn:
            return ""
        self._drawn = False
        return ERASE_LINE

    def finish(self, phrase: str, elapsed_s: float) -> str:
        """The last, permanent line: ``succeeded in 4.2s``."""
        return f"{self.clear()}{phrase} in {format_elapsed(elapsed_s)}\n"

    def _line(self, elapsed_s: float) -> str:
        self._drawn = True
        spin = self.spinner[self._frame % len(self.spinner)]
        text = f"{spin} {self.phrase}  {format_elapsed(elapsed_s)}"
        return ERASE_LINE + text[: self.width - 1]  # a wrapped line could not be redrawn


class LiveProgress:
    """Writes a ``ProgressRenderer``'s text to ``stream``; thread-safe. On a terminal a
    daemon thread redraws every ``interval`` seconds between ``start`` and ``stop``."""

    def __init__(self, renderer: ProgressRenderer, stream: TextIO, *, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.renderer = renderer
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, task_id: str, model: str) -> None:
        self._emit(lambda: self.renderer.submitted(task_id, model))
        if self.renderer.tty:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()

    def update(self, progress: ProgressLike) -> None:
        """The SDK's ``on_progress``."""
        self._emit(lambda: self.renderer.update(progress, self.elapsed()))

    def note(self, phrase: str) -> None:
        self._emit(lambda: self.renderer.note(phrase, self.elapsed()))

    def elapsed(self) -> float:
        return self.clock() - self.started

    def stop(self, final: str | None = None) -> None:
        """Stop redrawing; leave ``final in <elapsed>`` as the last line, or nothing."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        r = self.renderer
        self._emit(lambda: r.finish(final, self.elapsed()) if final else r.clear())

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self._emit(lambda: self.renderer.tick(self.elapsed()))

    def _emit(self, render: Callable[[], str]) -> None:
        # The renderer keeps the last state: render and write under one lock, as the redraw
        # thread and the SDK's callback both call here.
        with self._lock:
            text = render()
            if text:
                self.stream.write(text)
                self.stream.flush()

"""What the client answers: small immutable records, separate from the wire's JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

__all__ = ["Cancellation", "GeneratedImage", "Generation", "ModelInfo", "Progress",
           "TaskPage", "TaskStatus"]

FINISHED_STATES = frozenset({"success", "failed"})


@dataclass(frozen=True)
class Progress:
    """A change seen while waiting: ``stage`` and ``queue_position`` (1 = next to run) are
    imagegate extensions, None where the server does not send them; ``elapsed_s`` counts from
    the start of the wait."""

    task_id: str
    state: str
    stage: str | None
    queue_position: int | None
    elapsed_s: float


@dataclass(frozen=True)
class TaskStatus:
    """A task as a status read shows it (contract §5). Times are Unix milliseconds, ``cost``
    USD; fields the server did not send are None (``raw`` holds the answer's ``data`` as sent).
    """

    task_id: str
    state: str
    stage: str | None = None
    result_urls: tuple[str, ...] = ()
    fail_code: str | None = None
    fail_msg: str | None = None
    create_time: int | None = None
    complete_time: int | None = None
    cost_time: int | None = None
    cost: Decimal | None = None
    expire_time: int | None = None
    source: str | None = None
    model: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @property
    def finished(self) -> bool:
        """True once the task has ended, succeeded or failed (a cancelled task is failed)."""
        return self.state in FINISHED_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp",
               "image/gif": ".gif"}


@dataclass(frozen=True)
class GeneratedImage:
    """One result image: its URL, its bytes and their media type."""

    url: str
    data: bytes = field(repr=False)
    media_type: str

    def save(self, path: str | Path) -> Path:
        """Write the bytes to ``path``; when ``path`` is a directory (one that exists, or a path
        ending in ``/``), to a file in it named after the URL (``image-0.png``). Missing
        directories are created. Returns the file written."""
        target = Path(path)
        if target.is_dir() or str(path).endswith(("/", os.sep)):
            target = target / self.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.data)
        return target

    @property
    def filename(self) -> str:
        """The last segment of the URL's path, with an extension from the media type when it
        has none. Only a plain file name: what decodes to a path (``..%2Fx.png``) keeps its last
        part, and ``.``, ``..`` or nothing becomes ``image``, so that ``save(directory)``
        never writes outside the directory."""
        segment = unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])
        name = segment.replace("\\", "/").rsplit("/", 1)[-1].replace("\0", "")
        if name in ("", ".", ".."):
            name = "image"
        if "." not in name:
            name += _EXTENSIONS.get(self.media_type, "")
        return name


@dataclass(frozen=True)
class Generation:
    """A finished, successful task and its images, in the order of ``task.result_urls``."""

    task: TaskStatus
    images: tuple[GeneratedImage, ...]


@dataclass(frozen=True)
class Cancellation:
    """The answer of cancelTask: ``canceled`` (queued, refunded at once) or ``cancelling``
    (running: the worker abandons it unless it finishes first; read the status for the end)."""

    task_id: str
    state: Literal["canceled", "cancelling"]
    refunded: bool


@dataclass(frozen=True)
class TaskPage:
    """One page of the key's tasks, newest first; ``next_cursor`` is None on the last page."""

    tasks: tuple[TaskStatus, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class ModelInfo:
    """A model the key may use (contract §9): its accepted values, limits and USD prices per
    image by resolution."""

    id: str
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    output_formats: tuple[str, ...]
    max_prompt_chars: int | None
    max_references: int | None
    max_images: int | None
    prices: dict[str, Decimal] = field(hash=False)
    google_search: bool
    sandbox: bool
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

"""The route seam: one way to produce images for a task.

A route declares what it can do (``Capabilities``) and which upstream model it calls
(``upstream_model``), and implements ``generate`` and ``check``. ``generate`` raises only
``RouteError`` (with a failCode and whether a retry or failover may help; ``RouteUnavailable``
when the upstream no longer serves the model); ``check`` asks the upstream whether the model is
served and never raises. A route never touches the database, the HTTP layer or another route.
A route with work to do before it can serve (load a model, warm it up) also has ``start``
(``StartingRoute``), which its worker process awaits once before it claims any task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

from PIL import Image

from imagegate.contract import MODES, RATIOS, RESOLUTIONS
from imagegate.fetch import FetchedImage
from imagegate.imaging import decode_image
from imagegate.picture_headers import EncodedPicture

MAX_DECODED_PIXELS = 100_000_000  # an encoded picture is at most the job's size, far below


@dataclass(frozen=True)
class Capabilities:
    modes: tuple[str, ...] = MODES
    max_references: int = 14
    resolutions: tuple[str, ...] = RESOLUTIONS
    ratios: tuple[str, ...] = RATIOS
    search_grounding: bool = False
    official: bool = False
    # Cost to the operator per image per resolution in micro-USD (for provider="value").
    cost_micros: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """Everything a route needs for one task; sizes already resolved (no ``auto`` left)."""

    task_id: str
    model: str
    mode: str
    prompt: str
    aspect_ratio: str
    resolution: str
    width: int
    height: int
    output_format: str
    references: tuple[FetchedImage, ...] = ()  # fetched, checked and decoded
    image_urls: tuple[str, ...] = ()  # as the client sent them (for relays that fetch)
    google_search: bool = False
    seed: int | None = None
    num_images: int = 1
    attempt: int = 1


@dataclass(frozen=True)
class GeneratedImage:
    """A picture a route made: decoded (an ``Image``), or as its upstream encoded it (an
    ``EncodedPicture``, which a route hands over only when it is exactly the job's size: the
    worker then stores its bytes as they are when its format is the task's, and decodes it
    otherwise)."""

    source: Image.Image | EncodedPicture
    note: str = ""  # e.g. "upscaled from 1024x1024"

    @property
    def size(self) -> tuple[int, int]:
        return self.source.size

    @cached_property
    def image(self) -> Image.Image:
        """The decoded picture. An encoded one is decoded on first use (CPU work: off the
        event loop), at most ``MAX_DECODED_PIXELS``; ``ImageDecodeError`` when its bytes do not
        decode."""
        if isinstance(self.source, Image.Image):
            return self.source
        return decode_image(self.source.data, MAX_DECODED_PIXELS)


@dataclass(frozen=True)
class RouteCheck:
    """What a route's upstream said when asked whether it serves the route's model.

    ``available``: True (served), False (the upstream does not serve the model: the route cannot
    work until its operator changes it), None (no verdict: the upstream could not be reached, or
    refused or failed the question in a way that says nothing about the model; the route stays
    in use). ``detail``: one line for people."""

    available: bool | None
    detail: str


class Route(Protocol):
    name: str
    capabilities: Capabilities
    upstream_model: str  # the model id the upstream is asked for ("" where there is none)

    async def generate(self, job: Job) -> Sequence[GeneratedImage]: ...

    async def check(self) -> RouteCheck: ...

    async def close(self) -> None: ...


@runtime_checkable
class StartingRoute(Protocol):
    """A route that prepares itself once, before its worker claims tasks. ``start`` raises
    ``ConfigError`` (naming the option) when the route cannot work as configured; the worker
    process then stops instead of claiming tasks it cannot run."""

    async def start(self) -> None: ...

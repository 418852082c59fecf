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
from typing import Protocol, runtime_checkable

from PIL import Image

from imagegate.contract import MODES, RATIOS, RESOLUTIONS
from imagegate.fetch import FetchedImage


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
    image: Image.Image
    note: str = ""  # e.g. "upscaled from 1024x1024"


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

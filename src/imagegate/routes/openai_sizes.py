"""Sizes for servers of OpenAI's Images API: which native size to ask for, and how the answer
becomes the exact table size a task was promised. Pure functions, no I/O.

A model served by a diffusion engine makes good pictures at a few sizes only (``sizes`` of the
route, such as ``1024x1024``, ``1536x1024`` and ``1024x1536``). A task asks for a ratio and a
tier, resolved to an exact table size (``Job.width`` x ``Job.height``); the route asks the server
for the native size nearest to it, first by shape, then by area:

1. the smallest ``|log(w/h) - log(W/H)|`` (the shape that needs the least cropping);
2. among equal shapes, the smallest ``|log(w*h) - log(W*H)|`` (the least resizing);
3. among equals still, the larger size (downscaling loses less than upscaling).

The picture that comes back is center-cropped to the table size's shape and resized to it
(``fit``), and the route records what was done in the image's note.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from PIL import Image

from imagegate.imaging import fit_to_size

__all__ = ["DEFAULT_SIZES", "fit", "nearest_size", "parse_size"]

Size = tuple[int, int]

DEFAULT_SIZES: tuple[Size, ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
MAX_SIDE = 16384
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
_SAME_SHAPE = 1e-9  # log-ratio distances closer than this are the same shape


def parse_size(text: str) -> Size:
    """``(width, height)`` of ``"WIDTHxHEIGHT"``; ``ValueError`` for anything else, or a side
    outside 1..16384."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size such as 1024x1024")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"{text!r}: each side must be from 1 to {MAX_SIDE} pixels")
    return width, height


def nearest_size(sizes: Iterable[Size], width: int, height: int) -> Size:
    """The size of ``sizes`` nearest to ``width`` x ``height`` by the rules of the module
    docstring. ``ValueError`` when ``sizes`` is empty."""
    shape, area = math.log(width / height), math.log(width * height)

    def distance(size: Size) -> tuple[float, float, int]:
        w, h = size
        off_shape = abs(math.log(w / h) - shape)
        return (round(off_shape / _SAME_SHAPE) * _SAME_SHAPE, abs(math.log(w * h) - area),
                -w * h)

    candidates: Sequence[Size] = list(sizes)
    if not candidates:
        raise ValueError("no native sizes to choose from")
    return min(candidates, key=distance)


def fit(image: Image.Image, width: int, height: int) -> tuple[Image.Image, str]:
    """``image`` center-cropped to the shape of ``width`` x ``height`` and resized to exactly
    that size, with a note for the task saying what was done ("" when nothing was). CPU work
    on large pictures: run it off the event loop."""
    source_w, source_h = image.size
    fitted, adjusted = fit_to_size(image, width, height)
    if not adjusted:
        return fitted, ""
    wider, taller = source_w * height > width * source_h, source_w * height < width * source_h
    # A crop keeps the whole of one side: the picture was resized unless that side fits as is.
    resized = (source_h != height if wider else source_w != width if taller else True)
    cropped = wider or taller
    what = " and ".join(w for w, done in (("resized", resized), ("cropped", cropped)) if done)
    return fitted, f"{what} from {source_w}x{source_h} to {width}x{height}"

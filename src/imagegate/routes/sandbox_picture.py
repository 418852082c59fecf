"""The sandbox route's picture (docs/contract.md §9): a test image of the prompt, drawn without
a model.

The picture is a pure function of its arguments: the same prompt, size, seed, references and index
give the same pixels (and so the same encoded bytes) on the same Pillow. Text-to-image draws a
gradient with a few shapes; image-to-image lays the references out as a collage, so a person sees
their inputs in the output. Both carry the prompt in a panel and a caption naming the sandbox.
Everything runs in Pillow's C code, so even 12288x1536 renders in a fraction of a second; callers
still run it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import json
import math
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFont

from imagegate.imaging import fit_to_size

Colour = tuple[int, int, int]
Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

CAPTION_PREFIX = "imagegate sandbox"
_ELLIPSIS = "…"
_TEXT_COLOUR = (255, 255, 255)
_PANEL_COLOUR = (12, 14, 20)
_PANEL_ALPHA = 170
_TINT_ALPHA = 0.16  # share of the gradient laid over a collage: tints it, keeps the inputs clear


@dataclass(frozen=True)
class _Palette:
    start: Colour
    end: Colour
    accents: tuple[Colour, ...]


def render_sandbox_picture(prompt: str, width: int, height: int, *, seed: int | None = None,
                           references: Sequence[Image.Image] = (),
                           index: int = 0) -> Image.Image:
    """The sandbox's RGB picture of ``prompt``, exactly ``width`` x ``height`` pixels.

    Deterministic: equal arguments give equal pixels. ``references`` (image-to-image) fill the
    picture as a collage; ``index`` tells apart the images of one task. Raises ``ValueError``
    for a size below 1x1.
    """
    if width < 1 or height < 1:
        raise ValueError(f"picture size {width}x{height} has no pixels")
    rng = _rng(prompt, seed, index)
    palette = _palette(rng)
    canvas = _gradient(width, height, palette, rng)
    if references:
        canvas = _collage(canvas, references)
    else:
        _draw_shapes(canvas, palette, rng)
    scale = _text_scale(width, height)
    # Over a collage the prompt sits low and smaller, leaving the references in view.
    centre, share = (0.7, 0.4) if references else (0.5, 0.62)
    _draw_prompt(canvas, prompt, _font(scale), centre, share)
    _draw_caption(canvas, _caption(width, height, seed, len(references), index),
                  _font(max(8, round(scale * 0.42))))
    return canvas


def _rng(prompt: str, seed: int | None, index: int) -> random.Random:
    # Only ``random()`` is used: Python guarantees its sequence for an int seed across versions.
    digest = hashlib.sha256(json.dumps([prompt, seed, index]).encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _palette(rng: random.Random) -> _Palette:
    hue = rng.random()
    step = 0.18 + 0.3 * rng.random()
    accents = tuple(_hls(hue + step * (k + 2) + 0.1 * rng.random(), 0.45 + 0.3 * rng.random(),
                         0.75) for k in range(4))
    return _Palette(_hls(hue, 0.58, 0.7), _hls(hue + step, 0.3, 0.65), accents)


def _hls(hue: float, lightness: float, saturation: float) -> Colour:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def _gradient(width: int, height: int, palette: _Palette, rng: random.Random) -> Image.Image:
    """A diagonal two-colour gradient: built at 256x256, then stretched (cheap at any size)."""
    ramp = Image.linear_gradient("L")
    mask = ImageChops.add(ramp, ramp.transpose(Image.Transpose.ROTATE_90), scale=2.0)
    mask = mask.transpose(_TURNS[int(rng.random() * len(_TURNS))])
    small = Image.composite(Image.new("RGB", mask.size, palette.end),
                            Image.new("RGB", mask.size, palette.start), mask)
    return small.resize((width, height), Image.Resampling.BILINEAR)


_TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
          Image.Transpose.TRANSPOSE)


def _draw_shapes(canvas: Image.Image, palette: _Palette, rng: random.Random) -> None:
    width, height = canvas.size
    short, long = min(width, height), max(width, height)
    count = min(16, round(5 * math.sqrt(long / short)))
    for k in range(count):
        radius = short * (0.1 + 0.22 * rng.random())
        cx, cy = width * rng.random(), height * rng.random()
        kind = int(rng.random() * 4)
        spin = 360 * rng.random()
        alpha = 90 + int(90 * rng.random())
        _paste_shape(canvas, kind, (cx, cy, radius, spin), palette.accents[k % 4], alpha)


def _paste_shape(canvas: Image.Image, kind: int, geometry: tuple[float, float, float, float],
                 colour: Colour, alpha: int) -> None:
    """Blend one translucent shape in, touching only its bounding box."""
    cx, cy, r, spin = geometry
    box = _clip((math.floor(cx - r), math.floor(cy - r), math.ceil(cx + r) + 1,
                 math.ceil(cy + r) + 1), canvas.size)
    if box is None:
        return
    mask = Image.new("L", (box[2] - box[0], box[3] - box[1]))
    draw = ImageDraw.Draw(mask)
    x, y = cx - box[0], cy - box[1]
    if kind == 0:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=alpha)
    elif kind == 1:
        draw.ellipse((x - r, y - r, x + r, y + r), outline=alpha, width=max(1, round(r / 5)))
    elif kind == 2:
        draw.regular_polygon((x, y, r), 3, rotation=spin, fill=alpha)
    else:
        draw.rounded_rectangle((x - r, y - 0.6 * r, x + r, y + 0.6 * r), radius=r / 4, fill=alpha)
    canvas.paste(colour, box, mask)


def _clip(box: Box, size: tuple[int, int]) -> Box | None:
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(size[0], box[2]), min(size[1], box[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _collage(background: Image.Image, references: Sequence[Image.Image]) -> Image.Image:
    """The references cover-fitted into a grid over ``background``, tinted by it."""
    canvas = background.copy()
    for reference, (x0, y0, x1, y1) in zip(references, _cells(canvas.size, references),
                                           strict=True):
        if x1 <= x0 or y1 <= y0:
            continue
        source = reference if reference.mode in ("RGB", "RGBA") else reference.convert("RGBA")
        tile, _ = fit_to_size(source, x1 - x0, y1 - y0)
        canvas.paste(tile, (x0, y0), tile if tile.mode == "RGBA" else None)
    return Image.blend(canvas, background, _TINT_ALPHA)


def _cells(size: tuple[int, int], references: Sequence[Image.Image]) -> list[Box]:
    """One cell per reference, row by row; rows chosen so cells match the references' shape."""
    width, height = size
    count = len(references)
    aspect = math.exp(sum(math.log(r.width / r.height) for r in references) / count)
    rows = min(range(1, count + 1), key=lambda n: abs(
        math.log(width * n / (height * math.ceil(count / n)) / aspect)))
    gap = min(width, height) // 100
    cells: list[Box] = []
    for row in range(rows):
        y0, y1 = _span(row, rows, height, gap)
        in_row = count // rows + (1 if row < count % rows else 0)
        for col in range(in_row):
            x0, x1 = _span(col, in_row, width, gap)
            cells.append((x0, y0, x1, y1))
    return cells


def _span(k: int, parts: int, total: int, gap: int) -> tuple[int, int]:
    """Start and end of part ``k`` of ``parts`` along ``total`` pixels, ``gap`` between parts."""
    start = round(k * (total - gap) / parts) + gap
    end = round((k + 1) * (total - gap) / parts)
    return start, max(start, end)


def _text_scale(width: int, height: int) -> int:
    """Prompt font size in pixels: bounded by the short side so narrow pictures stay legible."""
    return max(10, round(min(min(width, height) * 0.07, math.sqrt(width * height) * 0.04)))


@functools.lru_cache(maxsize=32)
def _font(size: int) -> Font:
    # Pillow >= 10.1 scales its bundled font; older ones ignore the size (small but legible).
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow 10.0
        return ImageFont.load_default()


def _draw_prompt(canvas: Image.Image, prompt: str, font: Font, centre: float,
                 share: float) -> None:
    """The prompt, wrapped into a panel centred at ``centre`` of the height and at most
    ``share`` of it tall."""
    width, height = canvas.size
    line_height = _line_height(font)
    pad = line_height // 2
    max_lines = max(1, (round(height * share) - 2 * pad) // line_height)
    lines = wrap(prompt, font, round(width * 0.86) - 2 * pad, max_lines)
    if not lines:
        return
    block_w = math.ceil(max(font.getlength(line) for line in lines))
    block_h = line_height * len(lines)
    x0, y0 = (width - block_w) // 2, round(height * centre - block_h / 2)
    _panel(canvas, (x0 - pad, y0 - pad, x0 + block_w + pad, y0 + block_h + pad), pad)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        x = (width - font.getlength(line)) / 2
        draw.text((x, y0 + k * line_height), line, font=font, fill=_TEXT_COLOUR)


def _draw_caption(canvas: Image.Image, caption: str, font: Font) -> None:
    width, height = canvas.size
    line_height = _line_height(font)
    pad = max(2, line_height // 3)
    lines = wrap(caption, font, width - 4 * pad, 3)
    if not lines:
        return
    block_w = math.ceil(max(font.getlength(line) for line in lines))
    top = height - pad - line_height * len(lines) - pad
    _panel(canvas, (pad, top - pad, 3 * pad + block_w, height - pad), pad)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((2 * pad, top + k * line_height), line, font=font, fill=_TEXT_COLOUR)


def _caption(width: int, height: int, seed: int | None, references: int, index: int) -> str:
    parts = [CAPTION_PREFIX, f"{width}x{height}", "no seed" if seed is None else f"seed {seed}"]
    if references:
        parts.append(f"{references} reference{'s' if references > 1 else ''}")
    if index:
        parts.append(f"image {index + 1}")
    return " · ".join(parts)


def _panel(canvas: Image.Image, box: Box, radius: int) -> None:
    """A translucent dark rounded rectangle behind text."""
    clipped = _clip(box, canvas.size)
    if clipped is None:
        return
    mask = Image.new("L", (clipped[2] - clipped[0], clipped[3] - clipped[1]))
    shifted = (box[0] - clipped[0], box[1] - clipped[1], box[2] - clipped[0] - 1,
               box[3] - clipped[1] - 1)
    ImageDraw.Draw(mask).rounded_rectangle(shifted, radius=radius, fill=_PANEL_ALPHA)
    canvas.paste(_PANEL_COLOUR, clipped, mask)


def _line_height(font: Font) -> int:
    top, bottom = font.getbbox("Hgjy|")[1::2]
    return max(1, math.ceil((bottom - top) * 1.3))


def wrap(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """``text`` broken into at most ``max_lines`` lines no wider than ``max_width`` pixels.

    Whitespace collapses; accents fold to plain letters (the bundled font is ASCII-only); a word
    too long for a line is split; text that does not fit ends in an ellipsis.
    """
    lines: list[str] = []
    for line in _lines(_plain(text), font, max(1, max_width)):
        if len(lines) == max_lines:
            lines[-1] = _ellipsize(lines[-1], font, max_width)
            break
        lines.append(line)
    return lines


def _plain(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in folded if not unicodedata.combining(c)).split())


def _lines(text: str, font: Font, max_width: int) -> Iterator[str]:
    """Greedy word wrap, lazily, so a 20,000-character prompt costs only the lines shown."""
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            yield current
        current = word
        while font.getlength(current) > max_width and len(current) > 1:
            cut = _fitting_prefix(current, font, max_width)
            yield current[:cut]
            current = current[cut:]
    if current:
        yield current


def _fitting_prefix(text: str, font: Font, max_width: int) -> int:
    """Length of the longest prefix of ``text`` within ``max_width`` (at least one character)."""
    low, high = 1, min(len(text), 6 * max_width // max(1, _size(font)) + 1)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid]) <= max_width:
            low = mid
        else:
            high = mid - 1
    return low


def _ellipsize(line: str, font: Font, max_width: int) -> str:
    while line and font.getlength(line + _ELLIPSIS) > max_width:
        line = line[:-1]
    return line.rstrip() + _ELLIPSIS


def _size(font: Font) -> int:
    return round(font.size) if isinstance(font, ImageFont.FreeTypeFont) else 11

"""Reading an encoded picture's header, and checking its structure, without decoding a pixel.

A route that receives a picture already at the exact size a task asked for, in the task's
format, need not decode it and encode it again: decoding a 1024x1024 PNG and encoding it again
costs tens of milliseconds of CPU, more than everything else a task does. ``probe`` says whether
the bytes can be delivered as they are, in microseconds:

- PNG: the signature, then whole chunks to the end, each one's CRC-32 right (so a picture
  truncated or damaged on its way is refused); ``IHDR`` first, 8 bits per sample, RGB or RGBA
  (the colour types imagegate's own PNGs have), compression and filter method 0, interlace 0
  or 1; at least one ``IDAT``; no ``acTL`` (an animated PNG) and no ``eXIf`` (whose
  orientation would turn the picture in a viewer); ``IEND`` last, nothing after it.
- JPEG: ``SOI``, marker segments whole up to the first ``SOS``, one frame header of a baseline,
  extended or progressive Huffman frame (``SOF0``, ``SOF1`` or ``SOF2``) with 8-bit samples and
  3 components (a colour picture), no Exif segment (its orientation would turn the picture in
  a viewer) and no multi-picture index (MPO), and ``EOI`` as the last two bytes.

A picture delivered as it came keeps its ancillary chunks and segments (text, a colour profile),
which encoding it again would drop. Anything else (another format, a grey or palette or 16-bit
PNG, a CMYK JPEG, damaged bytes) is None: the caller decodes it and encodes it as it does every
other picture. The compressed pixel
data itself is not inflated: a PNG whose chunks are intact but whose zlib stream its encoder
wrote wrong would be delivered as it came. Pure functions, no I/O.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

__all__ = ["EncodedPicture", "probe"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = frozenset({2, 6})  # RGB, RGBA
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended, progressive (Huffman)
_JPEG_OTHER_FRAMES = frozenset({0xC3, *range(0xC5, 0xC8), *range(0xC9, 0xCC),
                                *range(0xCD, 0xD0)})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length
_JPEG_REFUSED_SEGMENTS = frozenset({(0xE1, b"Exif"), (0xE2, b"MPF\x00")})  # APP1, APP2


@dataclass(frozen=True)
class EncodedPicture:
    """A picture kept as it was encoded: its bytes, its ``format`` ("PNG" or "JPEG") and size
    as its header says, its structure checked by ``probe``."""

    data: bytes = field(repr=False)
    format: str
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def probe(data: bytes) -> EncodedPicture | None:
    """``data`` as an ``EncodedPicture`` when it may be delivered without decoding (see the
    module docstring); None otherwise. Never raises."""
    if data.startswith(PNG_SIGNATURE):
        size = _png_size(memoryview(data))
        return None if size is None else EncodedPicture(data, "PNG", *size)
    if data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
        return None if size is None else EncodedPicture(data, "JPEG", *size)
    return None


def _png_size(view: memoryview) -> tuple[int, int] | None:
    """The size in ``IHDR`` of a whole, undamaged, still, 8-bit RGB(A) PNG; None otherwise."""
    at, end, size, seen_data = len(PNG_SIGNATURE), len(view), None, False
    while at + 12 <= end:
        length, kind = struct.unpack_from(">I4s", view, at)
        body_end = at + 8 + length
        if body_end + 4 > end:
            return None  # truncated
        (crc,) = struct.unpack_from(">I", view, body_end)
        if zlib.crc32(view[at + 4:body_end]) != crc:
            return None  # damaged
        if size is None:
            if kind != b"IHDR":
                return None
            size = _ihdr_size(view[at + 8:body_end])
            if size is None:
                return None
        elif kind == b"IDAT":
            seen_data = True
        elif kind in (b"acTL", b"eXIf", b"IHDR"):
            return None  # animated, oriented, or a second header
        elif kind == b"IEND":
            return size if seen_data and body_end + 4 == end else None
        at = body_end + 4
    return None  # no IEND


def _ihdr_size(ihdr: memoryview) -> tuple[int, int] | None:
    if len(ihdr) != 13:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr)
    if (width < 1 or height < 1 or depth != 8 or colour not in _PNG_COLOUR_TYPES
            or compression or filtering or interlace > 1):
        return None
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame size of a whole 8-bit, 3-component Huffman JPEG; None otherwise."""
    if not data.endswith(b"\xff\xd9"):
        return None  # truncated: no EOI
    at, end, size = 2, len(data), None
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte
            at += 1
            continue
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2 or at + 2 + length > end:
            return None
        if marker == 0xDA:  # SOS: the entropy-coded data follows
            return size
        if marker in _JPEG_OTHER_FRAMES or (marker in _JPEG_FRAMES and size is not None):
            return None  # lossless, arithmetic or hierarchical, or a second frame
        if (marker, data[at + 4:at + 8]) in _JPEG_REFUSED_SEGMENTS:
            return None  # Exif (an orientation), or an index of more pictures (MPO)
        if marker in _JPEG_FRAMES:
            size = _sof_size(data[at + 4:at + 2 + length])
            if size is None:
                return None
        at += 2 + length
    return None


def _sof_size(sof: bytes) -> tuple[int, int] | None:
    if len(sof) < 6:
        return None
    precision, height, width, components = struct.unpack_from(">BHHB", sof)
    if precision != 8 or components != 3 or width < 1 or height < 1:
        return None
    return width, height

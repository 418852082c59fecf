"""picture_headers.probe: which encoded pictures may be delivered without decoding, read from
their headers and checked whole, and every kind it leaves to be decoded."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from imagegate.picture_headers import EncodedPicture, probe


def encoded(mode: str = "RGB", size: tuple[int, int] = (64, 48), fmt: str = "PNG",
            **options: Any) -> bytes:
    out = io.BytesIO()
    colour: Any = (200, 30, 30, 255)[: len(mode)] if mode in ("RGB", "RGBA", "CMYK") else 7
    Image.new(mode, size, colour).save(out, fmt, **options)
    return out.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_chunk_before_idat(png: bytes, extra: bytes) -> bytes:
    at = png.index(b"IDAT") - 4
    return png[:at] + extra + png[at:]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_whole_8_bit_colour_png_is_read_from_its_header(mode: str) -> None:
    data = encoded(mode, (640, 360))
    assert probe(data) == EncodedPicture(data, "PNG", 640, 360)


def test_an_interlaced_png_and_one_with_text_chunks_are_kept() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "a lighthouse")
    assert probe(encoded(size=(30, 20), pnginfo=info)) is not None
    png = encoded(size=(30, 20))
    at = png.index(b"IHDR")  # the chunk is 4 + 4 + 13 + 4 bytes from at - 4
    ihdr = png[at + 4:at + 16] + b"\x01"  # interlace method 1 (Adam7)
    interlaced = png[:at - 4] + chunk(b"IHDR", ihdr) + png[at + 21:]
    assert probe(interlaced) is not None  # the header checks out; the pixels are not read


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "I;16"])
def test_a_png_of_another_colour_type_or_depth_is_left_to_be_decoded(mode: str) -> None:
    assert probe(encoded(mode)) is None


def test_a_truncated_png_is_refused() -> None:
    data = encoded(size=(200, 200))
    for cut in (len(data) - 1, len(data) - 12, len(data) // 2, 40, 8):
        assert probe(data[:cut]) is None, cut


def test_a_png_damaged_anywhere_is_refused() -> None:
    data = bytearray(encoded(size=(200, 200)))
    for at in (len(data) // 2, data.index(b"IHDR") + 6, len(data) - 6):
        damaged = bytearray(data)
        damaged[at] ^= 0x40
        assert probe(bytes(damaged)) is None, at


def test_bytes_after_the_end_of_a_png_are_refused() -> None:
    assert probe(encoded() + b"\x00") is None


def test_an_animated_png_a_png_with_exif_and_a_png_without_pixels_are_refused() -> None:
    png = encoded()
    assert probe(with_chunk_before_idat(png, chunk(b"acTL", b"\x00\x00\x00\x02" * 2))) is None
    assert probe(with_chunk_before_idat(png, chunk(b"eXIf", b"MM\x00*"))) is None
    start = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[start:start + 4])
    assert probe(png[:start] + png[start + 12 + length:]) is None  # no IDAT


@pytest.mark.parametrize("progressive", [False, True])
def test_a_whole_colour_jpeg_is_read_from_its_header(progressive: bool) -> None:
    data = encoded(size=(320, 200), fmt="JPEG", progressive=progressive, quality=90)
    assert probe(data) == EncodedPicture(data, "JPEG", 320, 200)


def test_a_grey_or_cmyk_jpeg_is_left_to_be_decoded() -> None:
    assert probe(encoded("L", fmt="JPEG")) is None
    assert probe(encoded("CMYK", fmt="JPEG")) is None


def test_a_jpeg_with_exif_or_cut_short_is_refused() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned
    assert probe(encoded(fmt="JPEG", exif=exif.tobytes())) is None
    data = encoded(size=(200, 200), fmt="JPEG")
    assert probe(data[:-2]) is None
    assert probe(data[: len(data) // 2]) is None
    assert probe(data[:20] + b"\xff\xd9") is None  # headers cut before the frame


@pytest.mark.parametrize("data", [b"", b"\x89PNG", b"GIF89a....", b"RIFF\x00\x00\x00\x00WEBP",
                                  b"\xff\xd8\xff\xd9", b"not a picture at all"])
def test_other_bytes_are_left_to_be_decoded(data: bytes) -> None:
    assert probe(data) is None


def test_other_formats_pillow_makes_are_left_to_be_decoded() -> None:
    assert probe(encoded(fmt="WEBP")) is None
    assert probe(encoded(fmt="GIF")) is None

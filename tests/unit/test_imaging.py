from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image, ImageChops

from imagegate.contract import OUTPUT_FORMATS, RATIOS, output_size
from imagegate.imaging import (
    EncodedImage,
    as_delivered,
    encode,
    fit_to_size,
    flatten_alpha,
    normalise,
)
from imagegate.picture_headers import EncodedPicture, probe

# A tiny source keeps the sweep fast: the cost is in the output size, not the input.
SOURCE = Image.new("RGB", (40, 30), (30, 120, 200))
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG"}

# 1k and 2k are swept in full; 4k (17 to 25 megapixels each) only at its extreme shapes.
SWEEP = [(ratio, tier) for tier in ("1k", "2k") for ratio in RATIOS]
SWEEP += [("1:1", "4k"), ("8:1", "4k"), ("1:8", "4k")]
CASES = [(ratio, tier, fmt) for (ratio, tier), fmt in zip(SWEEP, itertools.cycle(OUTPUT_FORMATS))]


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _stripes(width: int, height: int, *, horizontal: bool) -> Image.Image:
    """Three equal stripes, blue | red | green (left to right, or top to bottom)."""
    img = Image.new("RGB", (width, height), (0, 0, 255))
    if horizontal:
        img.paste((255, 0, 0), (width // 3, 0, 2 * width // 3, height))
        img.paste((0, 255, 0), (2 * width // 3, 0, width, height))
    else:
        img.paste((255, 0, 0), (0, height // 3, width, 2 * height // 3))
        img.paste((0, 255, 0), (0, 2 * height // 3, width, height))
    return img


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    # LANCZOS reads a few source pixels past the crop, so edges carry a trace of the cut stripes.
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


@pytest.mark.parametrize(("ratio", "tier", "fmt"), CASES)
def test_normalise_delivers_the_listed_size_in_the_asked_format(
        ratio: str, tier: str, fmt: str) -> None:
    width, height = output_size(ratio, tier)
    result = normalise(SOURCE, width, height, fmt)
    decoded = _open(result.data)
    assert (decoded.width, decoded.height) == (width, height)
    assert decoded.format == PIL_FORMAT[fmt]
    assert (result.width, result.height, result.extension) == (width, height, fmt)
    assert result.content_type == ("image/png" if fmt == "png" else "image/jpeg")
    assert result.adjusted


def test_jpg_keeps_its_extension_and_is_jpeg() -> None:
    result = normalise(SOURCE, 64, 48, "JPG")
    assert result.extension == "jpg"
    assert result.content_type == "image/jpeg"
    assert _open(result.data).format == "JPEG"


def test_image_already_at_size_is_not_adjusted() -> None:
    fitted, adjusted = fit_to_size(SOURCE, 40, 30)
    assert fitted is SOURCE
    assert not adjusted
    result = normalise(SOURCE, 40, 30, "png")
    assert not result.adjusted
    assert ImageChops.difference(_open(result.data).convert("RGB"), SOURCE).getbbox() is None


def test_same_ratio_other_size_is_adjusted() -> None:
    fitted, adjusted = fit_to_size(SOURCE, 80, 60)
    assert fitted.size == (80, 60)
    assert adjusted


def test_crop_keeps_the_centre_of_a_wide_source() -> None:
    fitted, adjusted = fit_to_size(_stripes(300, 100, horizontal=True), 50, 50)
    assert adjusted
    assert fitted.size == (50, 50)
    for xy in [(0, 0), (49, 0), (0, 49), (49, 49), (25, 25)]:
        assert _near(fitted.getpixel(xy), (255, 0, 0)), xy  # type: ignore[arg-type]


def test_crop_keeps_the_centre_of_a_tall_source() -> None:
    fitted, _ = fit_to_size(_stripes(120, 900, horizontal=False), 120, 100)
    assert fitted.size == (120, 100)
    for xy in [(0, 0), (119, 0), (0, 99), (119, 99)]:
        assert _near(fitted.getpixel(xy), (255, 0, 0)), xy  # type: ignore[arg-type]


def test_jpeg_flattens_transparency_onto_white() -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    img.paste((255, 0, 0, 128), (0, 0, 16, 32))
    decoded = _open(encode(img, "jpeg"))
    assert decoded.mode == "RGB"
    assert _near(decoded.getpixel((24, 16)), (255, 255, 255), 4)  # type: ignore[arg-type]
    assert _near(decoded.getpixel((8, 16)), (255, 127, 127), 8)  # type: ignore[arg-type]


def test_flatten_alpha_handles_palette_transparency() -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.info["transparency"] = 0
    assert flatten_alpha(img).getpixel((0, 0)) == (255, 255, 255)


def test_png_keeps_transparency() -> None:
    img = Image.new("RGBA", (16, 16), (10, 20, 30, 40))
    decoded = _open(encode(img, "PNG"))
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((3, 3)) == (10, 20, 30, 40)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16"])
def test_other_modes_encode_in_every_format(mode: str) -> None:
    img = Image.new(mode, (20, 10))
    for fmt in OUTPUT_FORMATS:
        result = normalise(img, 30, 10, fmt)
        assert _open(result.data).size == (30, 10)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="webp"):
        encode(SOURCE, "webp")
    with pytest.raises(ValueError, match="gif"):
        normalise(SOURCE, 10, 10, "gif")


def test_empty_target_size_is_refused() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        fit_to_size(SOURCE, 0, 10)


def test_encoded_image_is_frozen() -> None:
    result = normalise(SOURCE, 8, 8, "png")
    assert isinstance(result, EncodedImage)
    with pytest.raises(AttributeError):
        result.width = 9  # type: ignore[misc]


def _probed(size: tuple[int, int], fmt: str) -> EncodedPicture:
    picture = probe(encode(Image.new("RGB", size, (10, 200, 90)), fmt))
    assert picture is not None
    return picture


@pytest.mark.parametrize(("fmt", "asked", "content_type"), [
    ("png", "png", "image/png"), ("png", "PNG", "image/png"), ("jpeg", "jpeg", "image/jpeg"),
    ("jpeg", "jpg", "image/jpeg"), ("jpeg", "JPG", "image/jpeg")])
def test_a_picture_already_at_the_size_and_format_is_delivered_byte_for_byte(
        fmt: str, asked: str, content_type: str) -> None:
    picture = _probed((1376, 768), fmt)
    delivered = as_delivered(picture, 1376, 768, asked)
    assert delivered == EncodedImage(picture.data, content_type, asked.lower(), 1376, 768,
                                     adjusted=False)


@pytest.mark.parametrize(("fmt", "width", "height", "asked"), [
    ("png", 1376, 767, "png"), ("png", 768, 1376, "png"), ("png", 1376, 768, "jpeg"),
    ("jpeg", 1376, 768, "png"), ("png", 1376, 768, "webp")])
def test_another_size_or_format_is_left_to_normalise(fmt: str, width: int, height: int,
                                                     asked: str) -> None:
    assert as_delivered(_probed((1376, 768), fmt), width, height, asked) is None

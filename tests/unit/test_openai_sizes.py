"""The size rules of the openai-images route: the native size asked for, and the exact table
size delivered."""

from __future__ import annotations

import pytest
from PIL import Image

from imagegate.contract import RATIOS, RESOLUTIONS, output_size
from imagegate.routes.openai_sizes import DEFAULT_SIZES, fit, nearest_size, parse_size


@pytest.mark.parametrize(("text", "size"), [("1024x1024", (1024, 1024)),
                                            (" 1536X1024 ", (1536, 1024)), ("1x16384", (1, 16384))])
def test_parse_size_reads_width_by_height(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1024", "1024x", "x1024", "0x1024", "16385x1", "10.5x10",
                                  "1024*1024", ""])
def test_parse_size_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(("ratio", "resolution", "chosen"), [
    ("1:1", "1k", (1024, 1024)),
    ("1:1", "4k", (1024, 1024)),      # the only square one, however large the tier
    ("3:2", "1k", (1536, 1024)),
    ("16:9", "2k", (1536, 1024)),     # the widest there is
    ("21:9", "1k", (1536, 1024)),
    ("4:3", "1k", (1536, 1024)),      # log(4/3) is nearer log(3/2) than log(1)
    ("5:4", "1k", (1536, 1024)),      # 1152x928: log(1.24) is nearer log(1.5) than log(1)
    ("9:16", "1k", (1024, 1536)),
    ("4:5", "1k", (1024, 1536)),
])
def test_nearest_size_goes_by_shape_first(ratio: str, resolution: str,
                                          chosen: tuple[int, int]) -> None:
    assert nearest_size(DEFAULT_SIZES, *output_size(ratio, resolution)) == chosen


def test_among_one_shape_the_nearest_area_wins_and_a_tie_takes_the_larger() -> None:
    sizes = [(512, 512), (1024, 1024), (2048, 2048), (1536, 1024)]
    assert nearest_size(sizes, 600, 600) == (512, 512)
    assert nearest_size(sizes, 1400, 1400) == (1024, 1024)
    assert nearest_size(sizes, 1500, 1500) == (2048, 2048)
    assert nearest_size([(512, 512), (2048, 2048)], 1024, 1024) == (2048, 2048)


def test_nearest_size_needs_a_size() -> None:
    with pytest.raises(ValueError):
        nearest_size([], 1024, 1024)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_every_table_size_is_delivered_exactly(ratio: str, resolution: str) -> None:
    width, height = output_size(ratio, resolution)
    native = nearest_size(DEFAULT_SIZES, width, height)
    fitted, note = fit(Image.new("RGB", native), width, height)
    assert fitted.size == (width, height)
    if native == (width, height):
        assert note == ""
    else:
        assert note.endswith(f"from {native[0]}x{native[1]} to {width}x{height}")


def test_fit_says_what_it_did() -> None:
    picture = Image.new("RGB", (1536, 1024))
    assert fit(picture, 1536, 1024)[1] == ""
    assert fit(picture, 1024, 1024)[1] == "cropped from 1536x1024 to 1024x1024"
    assert fit(picture, 3072, 2048)[1] == "resized from 1536x1024 to 3072x2048"
    assert fit(picture, 2752, 1536)[1] == "resized and cropped from 1536x1024 to 2752x1536"


def test_fit_crops_from_the_center() -> None:
    picture = Image.new("RGB", (300, 100), (255, 0, 0))
    picture.paste((0, 0, 255), (100, 0, 200, 100))  # a blue middle third
    fitted, _ = fit(picture, 100, 100)
    assert fitted.getpixel((50, 50)) == (0, 0, 255)
    assert fitted.getpixel((2, 50)) == (0, 0, 255)

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageFont

from imagegate.imaging import encode
from imagegate.routes.sandbox_picture import _text_scale, render_sandbox_picture, wrap

PROMPT = "A lighthouse on a cliff at dusk, gulls overhead"
RED = (220, 20, 20)


def _png(image: Image.Image) -> bytes:
    return encode(image, "png")


def _share_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int) -> float:
    """Share of pixels within ``tolerance`` of ``colour`` on every channel (no Python loop)."""
    masks = [band.point(lambda v, c=c: 255 if abs(v - c) <= tolerance else 0)
             for band, c in zip(image.convert("RGB").split(), colour, strict=True)]
    both = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    return both.histogram()[255] / (image.width * image.height)


@pytest.mark.parametrize("size", [(384, 3072), (3072, 384), (12288, 1536), (1376, 768),
                                  (1, 1), (7, 3)])
def test_picture_is_rgb_at_exactly_the_size(size: tuple[int, int]) -> None:
    picture = render_sandbox_picture(PROMPT, *size, seed=1)
    assert picture.mode == "RGB"
    assert picture.size == size


def test_picture_from_references_is_exactly_the_size() -> None:
    refs = [Image.new("RGB", (50, 400), RED), Image.new("RGBA", (300, 20), (0, 0, 255, 90))]
    for size in [(384, 3072), (3072, 384), (1, 1)]:
        assert render_sandbox_picture(PROMPT, *size, references=refs).size == size


def test_same_arguments_give_identical_bytes() -> None:
    refs = [Image.new("RGB", (64, 64), RED)]
    for kwargs in [{"seed": 42}, {"seed": None}, {"seed": 5, "references": refs, "index": 2}]:
        first = _png(render_sandbox_picture(PROMPT, 640, 480, **kwargs))  # type: ignore[arg-type]
        second = _png(render_sandbox_picture(PROMPT, 640, 480, **kwargs))  # type: ignore[arg-type]
        assert first == second


def test_prompt_seed_and_index_each_change_the_picture() -> None:
    base = _png(render_sandbox_picture(PROMPT, 640, 480, seed=42))
    assert _png(render_sandbox_picture(PROMPT + "!", 640, 480, seed=42)) != base
    assert _png(render_sandbox_picture(PROMPT, 640, 480, seed=43)) != base
    assert _png(render_sandbox_picture(PROMPT, 640, 480)) != base
    assert _png(render_sandbox_picture(PROMPT, 640, 480, seed=42, index=1)) != base


def test_solid_red_reference_makes_most_of_the_picture_red() -> None:
    reference = Image.new("RGB", (300, 200), RED)
    picture = render_sandbox_picture(PROMPT, 768, 768, seed=3, references=[reference])
    assert _share_near(picture, RED, 60) > 0.6
    plain = render_sandbox_picture(PROMPT, 768, 768, seed=3)
    assert _share_near(plain, RED, 60) < 0.2


def test_every_reference_shows_in_the_collage() -> None:
    colours = [(230, 20, 20), (20, 200, 40), (30, 40, 230), (240, 220, 30), (240, 240, 240)]
    refs = [Image.new("RGB", (100, 100), c) for c in colours]
    picture = render_sandbox_picture(PROMPT, 1024, 576, seed=9, references=refs)
    for colour in colours:
        assert _share_near(picture, colour, 60) > 0.05, colour


def test_references_in_other_modes_are_accepted() -> None:
    refs = [Image.new("L", (10, 10), 200), Image.new("P", (10, 10)), Image.new("LA", (10, 10))]
    assert render_sandbox_picture(PROMPT, 200, 100, references=refs).size == (200, 100)


def test_prompt_is_drawn_in_white_text() -> None:
    with_text = render_sandbox_picture(PROMPT, 800, 800, seed=1)
    assert _share_near(with_text, (255, 255, 255), 10) > 0.005


def test_text_stays_legible_in_narrow_pictures() -> None:
    assert _text_scale(384, 3072) >= 24
    assert _text_scale(3072, 384) >= 24
    assert _text_scale(4096, 4096) > _text_scale(1024, 1024)


def test_wrap_keeps_lines_within_the_width() -> None:
    font = ImageFont.load_default(size=20)
    lines = wrap(PROMPT * 3, font, 200, 50)
    assert len(lines) > 3
    assert all(font.getlength(line) <= 200 for line in lines)
    assert " ".join(lines) == " ".join((PROMPT * 3).split())


def test_wrap_truncates_with_an_ellipsis() -> None:
    font = ImageFont.load_default(size=20)
    lines = wrap("word " * 5000, font, 300, 4)
    assert len(lines) == 4
    assert lines[-1].endswith("…")
    assert font.getlength(lines[-1]) <= 300


def test_wrap_splits_a_word_longer_than_a_line() -> None:
    font = ImageFont.load_default(size=20)
    lines = wrap("x" * 20000, font, 150, 3)
    assert len(lines) == 3
    assert all(font.getlength(line) <= 150 for line in lines)


def test_wrap_folds_accents_and_collapses_whitespace() -> None:
    font = ImageFont.load_default(size=20)
    assert wrap("  café\n\tnaïve  ", font, 1000, 2) == ["cafe naive"]
    assert wrap("   ", font, 1000, 2) == []


def test_empty_size_is_refused() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        render_sandbox_picture(PROMPT, 0, 10)

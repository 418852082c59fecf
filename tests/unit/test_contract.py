"""The submit body's rules (docs/contract.md §4) and the output sizes (§6)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imagegate.contract import (
    RATIOS,
    ModelLimits,
    SubmitRequest,
    check_url,
    is_unicode,
    nearest_ratio,
    output_size,
    parse_submit,
)
from imagegate.errors import InvalidRequest

LIMITS = ModelLimits()

TEXT_BODY: dict[str, Any] = {
    "request_type": "async",
    "input": {
        "mode": "text-to-image",
        "prompt": "a fox in watercolor style",
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "output_format": "png",
        "google_search": False,
    },
}

IMAGE_BODY: dict[str, Any] = {
    "request_type": "async",
    "input": {
        "mode": "image-to-image",
        "prompt": "make this scene look like sunrise with warm golden light",
        "image_urls": ["https://example.com/source.png"],
        "aspect_ratio": "4:5",
        "resolution": "4k",
        "output_format": "jpeg",
        "google_search": False,
    },
}

_ABSENT = object()


def body(base: dict[str, Any] = TEXT_BODY, **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with top-level changes; ``_ABSENT`` removes a key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is _ABSENT:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def with_input(base: dict[str, Any] = TEXT_BODY, **changes: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``input`` changes; ``_ABSENT`` removes a key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is _ABSENT:
            out["input"].pop(key, None)
        else:
            out["input"][key] = value
    return out


def refused(raw: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_submit(raw, LIMITS)
    return caught.value


def accepted(raw: Any) -> SubmitRequest:
    return parse_submit(raw, LIMITS)


# The documented examples ----------------------------------------------------------------------


def test_documented_text_to_image_example_is_accepted() -> None:
    request = accepted(TEXT_BODY)
    assert request.request_type == "async"
    assert request.callback_url is None
    assert request.provider == "auto"
    assert request.source is None
    assert request.input.mode == "text-to-image"
    assert request.input.prompt == "a fox in watercolor style"
    assert request.input.aspect_ratio == "16:9"
    assert request.input.resolution == "2k"
    assert request.input.output_format == "png"
    assert request.input.image_urls == ()
    assert request.input.google_search is False
    assert request.input.seed is None
    assert request.input.num_images == 1


def test_documented_image_to_image_example_is_accepted() -> None:
    request = accepted(IMAGE_BODY)
    assert request.input.mode == "image-to-image"
    assert request.input.image_urls == ("https://example.com/source.png",)
    assert request.input.output_format == "jpeg"
    assert request.input.resolution == "4k"


def test_minimal_body_takes_the_defaults() -> None:
    request = accepted({"input": {"mode": "text-to-image", "prompt": "x",
                                  "aspect_ratio": "1:1", "resolution": "1k"}})
    assert request.request_type == "async"
    assert request.provider == "auto"
    assert request.input.output_format == "png"
    assert request.input.google_search is False
    assert request.input.num_images == 1


# The body and its top level -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], ["input"], "text", 3, True])
def test_body_that_is_not_an_object_is_refused(raw: Any) -> None:
    error = refused(raw)
    assert error.field is None
    assert error.status == 400


@pytest.mark.parametrize("value", ["sync", "ASYNC", "", 1, ["async"]])
def test_unknown_request_type_is_refused(value: Any) -> None:
    assert refused(body(request_type=value)).field == "request_type"


def test_absent_or_null_request_type_means_async() -> None:
    assert accepted(body(request_type=_ABSENT)).request_type == "async"
    assert accepted(body(request_type=None)).request_type == "async"


@pytest.mark.parametrize("url", [_ABSENT, None, ""])
def test_callback_request_without_callback_url_is_refused(url: Any) -> None:
    assert refused(body(request_type="callback", callback_url=url)).field == "callback_url"


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "example.com/hook", "https://",
                                 "javascript:alert(1)", "data:image/png;base64,AAAA", 42,
                                 ["https://example.com"], "https://example.com:99999/hook"])
def test_callback_url_that_is_not_an_http_url_is_refused(url: Any) -> None:
    assert refused(body(request_type="callback", callback_url=url)).field == "callback_url"


@pytest.mark.parametrize("url", ["https://example.com/hooks/apixo", "http://example.com/h?x=1"])
def test_callback_request_with_http_url_is_accepted(url: str) -> None:
    request = accepted(body(request_type="callback", callback_url=url))
    assert request.request_type == "callback"
    assert request.callback_url == url


def test_async_request_drops_a_callback_url() -> None:
    request = accepted(body(callback_url="https://example.com/hook"))
    assert request.callback_url is None


@pytest.mark.parametrize("url", ["", "not a url", 5])
def test_async_request_ignores_whatever_callback_url_it_carries(url: Any) -> None:
    # Only callback requests need it (docs/contract.md §4); SDKs send empty defaults.
    assert accepted(body(callback_url=url)).callback_url is None


@pytest.mark.parametrize("value", ["auto", "value", "official"])
def test_every_listed_provider_is_accepted(value: str) -> None:
    assert accepted(body(provider=value)).provider == value


@pytest.mark.parametrize("value", ["cheapest", "AUTO", "", 0])
def test_unknown_provider_is_refused(value: Any) -> None:
    assert refused(body(provider=value)).field == "provider"


def test_source_of_128_characters_is_kept() -> None:
    assert accepted(body(source="s" * 128)).source == "s" * 128


@pytest.mark.parametrize("value", ["s" * 129, 5, ["a"], {"a": 1}])
def test_source_longer_than_128_or_not_a_string_is_refused(value: Any) -> None:
    assert refused(body(source=value)).field == "source"


@pytest.mark.parametrize("value", [_ABSENT, None, [], "text-to-image", 7])
def test_input_missing_or_not_an_object_is_refused(value: Any) -> None:
    assert refused(body(input=value)).field == "input"


def test_unknown_fields_at_top_level_and_in_input_are_ignored() -> None:
    raw = with_input(body(model="nano-banana-2", extra={"x": 1}, webhook=None),
                     negative_prompt="blurry", style=3)
    request = accepted(raw)
    assert request.input.prompt == TEXT_BODY["input"]["prompt"]


# input.mode and input.prompt ------------------------------------------------------------------


@pytest.mark.parametrize("value", [_ABSENT, None])
def test_missing_mode_is_refused(value: Any) -> None:
    assert refused(with_input(mode=value)).field == "input.mode"


@pytest.mark.parametrize("value", ["text2image", "image-edit", "", 1])
def test_unknown_mode_is_refused(value: Any) -> None:
    assert refused(with_input(mode=value)).field == "input.mode"


@pytest.mark.parametrize("value", [_ABSENT, None, "", 5, ["a cat"]])
def test_missing_empty_or_non_string_prompt_is_refused(value: Any) -> None:
    assert refused(with_input(prompt=value)).field == "input.prompt"


@pytest.mark.parametrize("value", [" ", "   ", "\n\t ", "\u3000"])
def test_prompt_of_only_whitespace_is_refused(value: str) -> None:
    assert refused(with_input(prompt=value)).field == "input.prompt"


def test_prompt_of_20000_characters_is_accepted() -> None:
    assert len(accepted(with_input(prompt="a" * 20000)).input.prompt) == 20000


def test_prompt_of_20001_characters_is_refused() -> None:
    error = refused(with_input(prompt="a" * 20001))
    assert error.field == "input.prompt"
    assert "20000" in error.error


def test_prompt_length_counts_code_points_not_bytes_or_utf16_units() -> None:
    emoji = "\U0001F98A"  # one code point, 4 UTF-8 bytes, 2 UTF-16 units
    assert accepted(with_input(prompt=emoji * 20000)).input.prompt == emoji * 20000
    assert refused(with_input(prompt=emoji * 20001)).field == "input.prompt"


def test_prompt_is_kept_exactly_as_sent() -> None:
    prompt = "  a fox\n in watercolor  "
    assert accepted(with_input(prompt=prompt)).input.prompt == prompt


# input.image_urls -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [_ABSENT, None, [], "https://example.com/a.png", {}])
def test_image_to_image_without_a_list_of_urls_is_refused(value: Any) -> None:
    assert refused(with_input(IMAGE_BODY, image_urls=value)).field == "input.image_urls"


def test_image_to_image_accepts_14_references() -> None:
    urls = [f"https://example.com/{i}.png" for i in range(14)]
    assert accepted(with_input(IMAGE_BODY, image_urls=urls)).input.image_urls == tuple(urls)


def test_image_to_image_refuses_15_references() -> None:
    urls = [f"https://example.com/{i}.png" for i in range(15)]
    assert refused(with_input(IMAGE_BODY, image_urls=urls)).field == "input.image_urls"


@pytest.mark.parametrize("value", [_ABSENT, None, []])
def test_text_to_image_accepts_absent_or_empty_image_urls(value: Any) -> None:
    assert accepted(with_input(image_urls=value)).input.image_urls == ()


def test_text_to_image_refuses_reference_images() -> None:
    raw = with_input(image_urls=["https://example.com/a.png"])
    assert refused(raw).field == "input.image_urls"


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "a.png", "",
                                 "//example.com/a.png", 3, None, "https://"])
def test_reference_that_is_not_an_http_url_is_refused_naming_its_index(url: Any) -> None:
    urls = ["https://example.com/0.png", "http://example.com/1.png", url]
    assert refused(with_input(IMAGE_BODY, image_urls=urls)).field == "input.image_urls[2]"


def test_reference_may_be_a_base64_data_uri() -> None:
    uri = "data:image/png;base64,iVBORw0KGgo="
    assert accepted(with_input(IMAGE_BODY, image_urls=[uri])).input.image_urls == (uri,)


@pytest.mark.parametrize("uri", ["data:text/plain;base64,aGk=", "data:image/png,rawbytes"])
def test_data_uri_that_is_not_a_base64_image_is_refused(uri: str) -> None:
    assert refused(with_input(IMAGE_BODY, image_urls=[uri])).field == "input.image_urls[0]"


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\x00", "\x1f", "\x7f"])
def test_url_with_a_control_character_is_refused_naming_it(char: str) -> None:
    url = f"https://example.com/a{char}b.png"
    error = refused(with_input(IMAGE_BODY, image_urls=["https://example.com/0.png", url]))
    assert error.field == "input.image_urls[1]" and "control characters" in error.error
    raw = body(request_type="callback", callback_url=url)
    assert refused(raw).field == "callback_url"


def test_url_may_hold_non_ascii_characters_and_spaces() -> None:
    # An HTTP client percent-encodes them when it sends the request.
    url = "https://example.com/\u56fe\u7247 1.png"
    assert accepted(with_input(IMAGE_BODY, image_urls=[url])).input.image_urls == (url,)


def test_data_uri_may_wrap_its_base64_over_lines() -> None:
    uri = "data:image/png;base64,iVBORw0K\nGgo="
    assert accepted(with_input(IMAGE_BODY, image_urls=[uri])).input.image_urls == (uri,)


def test_check_url_names_the_field_it_is_given() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_url("ftp://example.com/hook", "url")
    assert caught.value.field == "url" and caught.value.error.startswith("url ")


# Strings that are not Unicode: a JSON "\ud800" escape decodes to a lone surrogate ---------------

LONE = "\ud800"


def test_is_unicode_tells_a_lone_surrogate_from_a_pair() -> None:
    assert is_unicode("a fox \U0001F98A") and is_unicode("")
    assert not is_unicode(f"a fox {LONE}") and not is_unicode("\udfff")


@pytest.mark.parametrize("raw,field", [
    (body(source=f"app {LONE}"), "source"),
    (body(request_type="callback", callback_url=f"https://example.com/{LONE}"), "callback_url"),
    (with_input(IMAGE_BODY, image_urls=["https://example.com/a.png",
                                        f"https://example.com/{LONE}.png"]),
     "input.image_urls[1]"),
    (with_input(IMAGE_BODY, image_urls=[f"data:image/png;base64,{LONE}"]), "input.image_urls[0]"),
    (with_input(prompt=f"a fox {LONE}"), "input.prompt"),
])
def test_string_with_a_lone_surrogate_is_refused_naming_its_field(raw: Any, field: str) -> None:
    error = refused(raw)
    assert error.field == field
    assert error.error.startswith(f"{field} must be valid Unicode text")


# input.aspect_ratio, resolution, output_format ------------------------------------------------


@pytest.mark.parametrize("value", [_ABSENT, None])
def test_missing_aspect_ratio_is_refused(value: Any) -> None:
    assert refused(with_input(aspect_ratio=value)).field == "input.aspect_ratio"


@pytest.mark.parametrize("ratio", ["auto", "1:1", "1:4", "4:1", "1:8", "3:2", "2:3", "3:4",
                                   "4:3", "4:5", "5:4", "8:1", "9:16", "16:9", "21:9"])
def test_every_listed_aspect_ratio_is_accepted(ratio: str) -> None:
    assert accepted(with_input(aspect_ratio=ratio)).input.aspect_ratio == ratio


@pytest.mark.parametrize("ratio", ["1:2", "16:10", "9:21", "1/1", "", 1, 1.0])
def test_unlisted_aspect_ratio_is_refused(ratio: Any) -> None:
    assert refused(with_input(aspect_ratio=ratio)).field == "input.aspect_ratio"


def test_aspect_ratio_outside_a_models_own_list_is_refused() -> None:
    limits = ModelLimits(ratios=("1:1", "16:9"))
    with pytest.raises(InvalidRequest) as caught:
        parse_submit(with_input(aspect_ratio="4:5"), limits)
    assert caught.value.field == "input.aspect_ratio"
    assert parse_submit(with_input(aspect_ratio="auto"), limits).input.aspect_ratio == "auto"


@pytest.mark.parametrize("value", [_ABSENT, None])
def test_missing_resolution_is_refused(value: Any) -> None:
    assert refused(with_input(resolution=value)).field == "input.resolution"


@pytest.mark.parametrize(("value", "expected"), [("1k", "1k"), ("1K", "1k"), ("2K", "2k"),
                                                 ("4k", "4k"), ("4K", "4k")])
def test_resolution_is_case_insensitive(value: str, expected: str) -> None:
    assert accepted(with_input(resolution=value)).input.resolution == expected


@pytest.mark.parametrize("value", ["8k", "1024", "hd", "", 1])
def test_unknown_resolution_is_refused(value: Any) -> None:
    assert refused(with_input(resolution=value)).field == "input.resolution"


@pytest.mark.parametrize("value", [_ABSENT, None])
def test_output_format_defaults_to_png(value: Any) -> None:
    assert accepted(with_input(output_format=value)).input.output_format == "png"


@pytest.mark.parametrize(("value", "expected"), [("png", "png"), ("PNG", "png"),
                                                 ("jpeg", "jpeg"), ("JPEG", "jpeg"),
                                                 ("jpg", "jpg"), ("JPG", "jpg")])
def test_output_format_is_case_insensitive_and_keeps_jpg_as_asked(value: str,
                                                                  expected: str) -> None:
    assert accepted(with_input(output_format=value)).input.output_format == expected


@pytest.mark.parametrize("value", ["gif", "webp", "", 1])
def test_unknown_output_format_is_refused(value: Any) -> None:
    assert refused(with_input(output_format=value)).field == "input.output_format"


# input.google_search, seed, num_images --------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_google_search_takes_a_boolean(value: bool) -> None:
    assert accepted(with_input(google_search=value)).input.google_search is value


def test_google_search_defaults_to_false() -> None:
    assert accepted(with_input(google_search=_ABSENT)).input.google_search is False


@pytest.mark.parametrize("value", ["true", "false", 1, 0, [], {}])
def test_google_search_that_is_not_a_boolean_is_refused(value: Any) -> None:
    assert refused(with_input(google_search=value)).field == "input.google_search"


@pytest.mark.parametrize("value", [0, 42, 2**63 - 1])
def test_seed_takes_a_non_negative_integer(value: int) -> None:
    assert accepted(with_input(seed=value)).input.seed == value


def test_seed_defaults_to_none() -> None:
    assert accepted(with_input(seed=_ABSENT)).input.seed is None


def test_seed_null_is_refused_not_taken_as_absent() -> None:
    # An extension field is absent or typed; only APIXO's own optional fields read null as absent.
    error = refused(with_input(seed=None))
    assert error.field == "input.seed" and "leave it out" in error.error


@pytest.mark.parametrize("value", [-1, 2**63, 1.5, "7", True])
def test_seed_that_is_not_a_non_negative_integer_is_refused(value: Any) -> None:
    assert refused(with_input(seed=value)).field == "input.seed"


@pytest.mark.parametrize("value", [1, 2, 3, 4])
def test_num_images_from_1_to_4_is_accepted(value: int) -> None:
    assert accepted(with_input(num_images=value)).input.num_images == value


@pytest.mark.parametrize("value", [0, 5, -1, 2.0, "2", True])
def test_num_images_outside_1_to_4_or_not_an_integer_is_refused(value: Any) -> None:
    assert refused(with_input(num_images=value)).field == "input.num_images"


def test_error_message_is_for_a_person_and_status_is_400() -> None:
    error = refused(with_input(prompt=""))
    assert error.status == 400
    assert "input.prompt" in error.error


# Output sizes (docs/contract.md §6), written out independently of the code --------------------

SIZE_TABLE: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"1k": (1024, 1024), "2k": (2048, 2048), "4k": (4096, 4096)},
    "1:4": {"1k": (512, 2048), "2k": (1024, 4096), "4k": (2048, 8192)},
    "4:1": {"1k": (2048, 512), "2k": (4096, 1024), "4k": (8192, 2048)},
    "1:8": {"1k": (384, 3072), "2k": (768, 6144), "4k": (1536, 12288)},
    "8:1": {"1k": (3072, 384), "2k": (6144, 768), "4k": (12288, 1536)},
    "2:3": {"1k": (848, 1264), "2k": (1696, 2528), "4k": (3392, 5056)},
    "3:2": {"1k": (1264, 848), "2k": (2528, 1696), "4k": (5056, 3392)},
    "3:4": {"1k": (896, 1200), "2k": (1792, 2400), "4k": (3584, 4800)},
    "4:3": {"1k": (1200, 896), "2k": (2400, 1792), "4k": (4800, 3584)},
    "4:5": {"1k": (928, 1152), "2k": (1856, 2304), "4k": (3712, 4608)},
    "5:4": {"1k": (1152, 928), "2k": (2304, 1856), "4k": (4608, 3712)},
    "9:16": {"1k": (768, 1376), "2k": (1536, 2752), "4k": (3072, 5504)},
    "16:9": {"1k": (1376, 768), "2k": (2752, 1536), "4k": (5504, 3072)},
    "21:9": {"1k": (1584, 672), "2k": (3168, 1344), "4k": (6336, 2688)},
}


def test_size_table_covers_exactly_the_listed_ratios() -> None:
    assert set(SIZE_TABLE) == set(RATIOS)
    assert len(RATIOS) == 14


@pytest.mark.parametrize("resolution", ["1k", "2k", "4k"])
@pytest.mark.parametrize("ratio", list(SIZE_TABLE))
def test_output_size_matches_the_published_table(ratio: str, resolution: str) -> None:
    assert output_size(ratio, resolution) == SIZE_TABLE[ratio][resolution]


@pytest.mark.parametrize("ratio", list(SIZE_TABLE))
def test_output_sizes_are_multiples_of_8_and_each_tier_doubles_the_one_below(ratio: str) -> None:
    one, two, four = (output_size(ratio, r) for r in ("1k", "2k", "4k"))
    for w, h in (one, two, four):
        assert w % 8 == 0
        assert h % 8 == 0
    assert two == (one[0] * 2, one[1] * 2)
    assert four == (two[0] * 2, two[1] * 2)


@pytest.mark.parametrize("ratio", list(SIZE_TABLE))
def test_output_size_is_close_to_its_ratio_and_oriented_the_right_way(ratio: str) -> None:
    a, b = (int(x) for x in ratio.split(":"))
    w, h = output_size(ratio, "1k")
    assert abs(w / h - a / b) / (a / b) < 0.02
    assert nearest_ratio(w, h) == ratio


@pytest.mark.parametrize(("size", "expected"), [
    ((1000, 1000), "1:1"),
    ((1920, 1080), "16:9"),
    ((1080, 1920), "9:16"),
    ((100, 800), "1:8"),
    ((800, 100), "8:1"),
    ((1080, 1350), "4:5"),
    ((1350, 1080), "5:4"),
    ((3000, 2000), "3:2"),
    ((2560, 1080), "21:9"),
    ((4000, 3000), "4:3"),
    ((1, 100), "1:8"),  # beyond the table's extremes: the extreme itself
    ((5000, 1), "8:1"),
    ((1024, 1000), "1:1"),
])
def test_nearest_ratio_picks_the_closest_listed_ratio(size: tuple[int, int],
                                                      expected: str) -> None:
    assert nearest_ratio(*size) == expected


def test_nearest_ratio_measures_distance_in_log_space() -> None:
    # 1:2.5 lies between 1:4 (log distance ln 1.6) and 9:16 (ln 1.40625): 9:16 is nearer in
    # log space, while in linear width/height 0.4 is nearer to 1:4 (0.15) than to 9:16 (0.1625).
    assert nearest_ratio(400, 1000) == "9:16"

"""The OpenAI Images facade's translation (facades/openai_images.py, openai_errors.py,
openai_models.py): requests to native submit bodies, tasks to answers and errors, the model
list (docs/openai-images.md)."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from imagegate.app.generation import GeneratedImage, Generation
from imagegate.contract import ModelLimits, SubmitInput, parse_submit
from imagegate.errors import FailCode, InvalidRequest
from imagegate.facades import openai_errors
from imagegate.facades.openai_images import (
    DEFAULT_MODEL,
    Upload,
    answer,
    map_size,
    parse_edit_form,
    parse_edit_json,
    parse_generation,
    requested_model,
    sniff_image,
)
from imagegate.facades.openai_models import model_list
from imagegate.money import ChargeState
from imagegate.tasks import ResultFile, Task, TaskState

FLAGSHIP = ModelLimits()  # nano-banana-2: 14 ratios, 1k/2k/4k, up to 4 images
ONLY_1K = ModelLimits(resolutions=("1k",), ratios=("1:1", "2:3", "3:2", "3:4", "4:3", "4:5",
                                                   "5:4", "9:16", "16:9", "21:9"),
                      size_table="gemini-2.5")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 16
WEBP = b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 8
MAX_BYTES = 1000


def refused_field(exc: pytest.ExceptionInfo[InvalidRequest]) -> str | None:
    return exc.value.field


# size and quality ---------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "expected"), [
    ("1024x1024", ("1:1", "1k")),
    ("256x256", ("1:1", "1k")),  # DALL-E 2's sizes: the smallest tier, never resized down
    ("512x512", ("1:1", "1k")),
    ("1536x1024", ("3:2", "1k")),
    ("1024x1536", ("2:3", "1k")),
    ("1792x1024", ("16:9", "1k")),  # DALL-E 3's wide size: 1.75 is nearest 16:9
    ("1024x1792", ("9:16", "1k")),
    ("2048x2048", ("1:1", "2k")),
    ("2560x1440", ("16:9", "2k")),
    ("3840x2160", ("16:9", "2k")),  # 2752 is nearer 3840 than 5504 is (log scale)
    ("4096x4096", ("1:1", "4k")),
    ("5000x600", ("8:1", "2k")),
])
def test_size_picks_the_nearest_ratio_and_tier(size: str, expected: tuple[str, str]) -> None:
    assert map_size(size, None, FLAGSHIP) == expected


def test_size_keeps_to_the_models_ratios_and_tiers() -> None:
    assert map_size("4096x4096", None, ONLY_1K) == ("1:1", "1k")
    assert map_size("5000x600", None, ONLY_1K) == ("21:9", "1k")


@pytest.mark.parametrize(("quality", "tier"), [
    (None, "1k"), ("auto", "1k"), ("low", "1k"), ("medium", "1k"), ("standard", "1k"),
    ("high", "2k"), ("hd", "2k"), ("xhigh", "4k"), ("max", "4k"),
])
def test_auto_size_takes_the_tier_from_quality(quality: str | None, tier: str) -> None:
    assert map_size("auto", quality, FLAGSHIP) == ("auto", tier)
    assert map_size(None, quality, FLAGSHIP) == ("auto", tier)


def test_quality_asks_at_most_for_the_models_largest_tier() -> None:
    assert map_size("auto", "max", ONLY_1K) == ("auto", "1k")
    assert map_size("auto", "max", ModelLimits(resolutions=("1k", "2k"))) == ("auto", "2k")


def test_an_explicit_size_wins_over_quality() -> None:
    assert map_size("1024x1024", "high", FLAGSHIP) == ("1:1", "1k")


@pytest.mark.parametrize("size", ["big", "1024", "1024x", "0x1024", "1024X1024", " 1024x1024",
                                  "99999x1", "16385x16385", 1024, ["1024x1024"]])
def test_a_bad_size_is_refused_by_name(size: Any) -> None:
    with pytest.raises(InvalidRequest) as exc:
        map_size(size, None, FLAGSHIP)
    assert refused_field(exc) == "size"


def test_an_unknown_quality_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest) as exc:
        map_size("auto", "ultra", FLAGSHIP)
    assert refused_field(exc) == "quality"


# generations ----------------------------------------------------------------------------------

def test_a_generation_becomes_a_native_text_to_image_body() -> None:
    parsed = parse_generation({"prompt": "a fox", "model": "gpt-image-1", "n": 2,
                               "size": "1536x1024", "output_format": "jpeg",
                               "response_format": "url", "moderation": "low", "style": "vivid",
                               "user": "u1", "output_compression": 80}, FLAGSHIP)
    assert parsed.response_format == "url"
    assert parsed.body == {"input": {"mode": "text-to-image", "prompt": "a fox",
                                     "aspect_ratio": "3:2", "resolution": "1k",
                                     "output_format": "jpeg", "num_images": 2}}
    parse_submit(parsed.body, FLAGSHIP)  # the native validation takes it as it is


def test_defaults_are_one_png_at_auto_ratio_1k_answered_in_base64() -> None:
    parsed = parse_generation({"prompt": "a fox"}, FLAGSHIP)
    assert parsed.response_format == "b64_json"
    assert parsed.body["input"] == {"mode": "text-to-image", "prompt": "a fox",
                                    "aspect_ratio": "auto", "resolution": "1k",
                                    "output_format": "png", "num_images": 1}


@pytest.mark.parametrize(("model", "response_format"), [
    (None, "b64_json"), ("gpt-image-1", "b64_json"), ("nano-banana-2", "b64_json"),
    ("dall-e-2", "url"), ("dall-e-3", "url"),
])
def test_only_dall_e_names_answer_in_urls_by_default(model: str | None,
                                                     response_format: str) -> None:
    parsed = parse_generation({"prompt": "a fox", "model": model}, FLAGSHIP)
    assert parsed.response_format == response_format
    edit = parse_edit_form({"prompt": "x", **({"model": model} if model else {})},
                           [Upload("a.png", PNG)], FLAGSHIP, max_image_bytes=MAX_BYTES)
    assert edit.response_format == response_format
    forced = parse_generation({"prompt": "a fox", "model": model,
                               "response_format": "b64_json"}, FLAGSHIP)
    assert forced.response_format == "b64_json"


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 5}, "n"), ({"n": 0}, "n"), ({"n": "2"}, "n"), ({"n": True}, "n"),
    ({"output_format": "webp"}, "output_format"), ({"output_format": "gif"}, "output_format"),
    ({"response_format": "base64"}, "response_format"),
    ({"background": "transparent"}, "background"), ({"stream": True}, "stream"),
    ({"size": "huge"}, "size"), ({"quality": "ultra"}, "quality"),
])
def test_a_field_the_facade_cannot_serve_is_refused_by_its_openai_name(
        fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_generation({"prompt": "a fox", **fields}, FLAGSHIP)
    assert refused_field(exc) == param


def test_n_is_bounded_by_the_models_max_images() -> None:
    assert parse_generation({"prompt": "x", "n": 4}, FLAGSHIP).body["input"]["num_images"] == 4
    with pytest.raises(InvalidRequest, match="1 to 2"):
        parse_generation({"prompt": "x", "n": 3}, ModelLimits(max_images=2))


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        parse_generation(["a fox"], FLAGSHIP)


def test_the_model_defaults_to_the_flagship_and_must_be_a_string() -> None:
    assert requested_model({}) == requested_model({"model": ""}) == DEFAULT_MODEL
    assert requested_model({"model": "dall-e-2"}) == "dall-e-2"
    with pytest.raises(InvalidRequest) as exc:
        requested_model({"model": 3})
    assert refused_field(exc) == "model"


# edits ----------------------------------------------------------------------------------------

def test_uploaded_files_become_data_uris_of_their_sniffed_type() -> None:
    parsed = parse_edit_form({"prompt": "merge", "n": "2", "size": "1024x1024",
                              "stream": "false"},
                             [Upload("a.png", PNG), Upload("b.jpg", JPEG), Upload("c", WEBP)],
                             FLAGSHIP, max_image_bytes=MAX_BYTES)
    inp = parsed.body["input"]
    assert inp["mode"] == "image-to-image" and inp["num_images"] == 2
    assert inp["image_urls"] == [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "data:image/jpeg;base64," + base64.b64encode(JPEG).decode(),
        "data:image/webp;base64," + base64.b64encode(WEBP).decode()]
    parse_submit(parsed.body, FLAGSHIP)


def test_an_upload_that_is_no_image_or_too_large_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest, match=r"'notes\.txt' is not a PNG") as exc:
        parse_edit_form({"prompt": "x"}, [Upload("notes.txt", b"hello")], FLAGSHIP,
                        max_image_bytes=MAX_BYTES)
    assert refused_field(exc) == "image"
    with pytest.raises(InvalidRequest, match="larger than 1000 bytes") as exc:
        parse_edit_form({"prompt": "x"}, [Upload("big.png", PNG + b"\0" * MAX_BYTES)], FLAGSHIP,
                        max_image_bytes=MAX_BYTES)
    assert refused_field(exc) == "image"


def test_an_edit_needs_an_image_and_refuses_a_mask() -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_edit_form({"prompt": "x"}, [], FLAGSHIP, max_image_bytes=MAX_BYTES)
    assert refused_field(exc) == "image"
    with pytest.raises(InvalidRequest) as exc:
        parse_edit_form({"prompt": "x", "mask": "mask.png"}, [Upload("a.png", PNG)], FLAGSHIP,
                        max_image_bytes=MAX_BYTES)
    assert refused_field(exc) == "mask"


def test_a_form_n_that_is_no_number_is_refused_as_n() -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_edit_form({"prompt": "x", "n": "two"}, [Upload("a.png", PNG)], FLAGSHIP,
                        max_image_bytes=MAX_BYTES)
    assert refused_field(exc) == "n"


def test_a_json_edit_takes_image_urls() -> None:
    parsed = parse_edit_json({"prompt": "merge", "images": [
        {"image_url": "https://img.example.com/a.png"},
        {"image_url": "data:image/png;base64,iVBORw0KGgo="}]}, FLAGSHIP)
    assert parsed.body["input"]["image_urls"] == ["https://img.example.com/a.png",
                                                  "data:image/png;base64,iVBORw0KGgo="]
    assert parsed.body["input"]["mode"] == "image-to-image"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "images"), ({"images": []}, "images"), ({"images": "https://a/b.png"}, "images"),
    ({"images": [{"file_id": "file-1"}]}, "images[0]"),
    ({"images": [{"image_url": "https://a/b.png"}, "x"]}, "images[1]"),
    ({"images": [{"image_url": "https://a/b.png"}], "mask": {"image_url": "https://a/m.png"}},
     "mask"),
])
def test_a_bad_json_edit_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_edit_json({"prompt": "x", **body}, FLAGSHIP)
    assert refused_field(exc) == param


def test_sniff_image_knows_the_formats_references_may_have() -> None:
    assert sniff_image(PNG) == "image/png"
    assert sniff_image(JPEG) == "image/jpeg"
    assert sniff_image(WEBP) == "image/webp"
    assert sniff_image(b"GIF89a...") == "image/gif"
    assert sniff_image(b"<svg/>") is None
    assert sniff_image(b"") is None


# answers --------------------------------------------------------------------------------------

def make_task(**changes: Any) -> Task:
    task = Task(id="0123456789abcdef0123456789abcdef", account_id="acct", key_id="key",
                model="nano-banana-2",
                input=SubmitInput(mode="text-to-image", prompt="a fox", aspect_ratio="3:2",
                                  resolution="1k", output_format="png"),
                state=TaskState.SUCCEEDED, created_ms=1_700_000_000_999, price_micros=100_000,
                charge_state=ChargeState.SETTLED, result_token="tok")
    return dataclasses.replace(task, **changes)


def image(i: int, data: bytes | None) -> GeneratedImage:
    file = ResultFile(key=f"k/{i}", name=f"image-{i}.jpg", content_type="image/jpeg",
                      size=10, width=1264, height=848)
    return GeneratedImage(f"https://img.example.com/files/t/tok/image-{i}.jpg", file, data)


def test_an_answer_carries_base64_images_and_what_was_made() -> None:
    generation = Generation(make_task(), (image(0, b"one"), image(1, b"two")))
    assert answer(generation, "b64_json") == {
        "created": 1_700_000_000,
        "data": [{"b64_json": "b25l"}, {"b64_json": "dHdv"}],
        "output_format": "jpeg", "size": "1264x848"}


def test_an_answer_in_urls_links_the_results() -> None:
    generation = Generation(make_task(), (image(0, None),))
    assert answer(generation, "url")["data"] == [
        {"url": "https://img.example.com/files/t/tok/image-0.jpg"}]


# errors ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Refused:
    status: int
    message: str = "no"
    field: str | None = None
    reason: str = "x"
    retry_after: float | None = None
    task_id: str | None = None


def test_a_refusal_after_the_task_was_stored_is_never_to_be_retried() -> None:
    assert openai_errors.refused(Refused(503, retry_after=5.0)).headers() == {"retry-after": "5"}
    after = openai_errors.refused(Refused(503, retry_after=5.0, task_id="t1")).headers()
    assert after == {"retry-after": "5", "x-should-retry": "false"}


@pytest.mark.parametrize(("field", "param"), [
    ("input.prompt", "prompt"), ("input.num_images", "n"), ("input.aspect_ratio", "size"),
    ("input.resolution", "size"), ("input.output_format", "output_format"),
    ("input.image_urls[3]", "image"), ("input.image_urls", "image"), ("input.seed", None),
    ("size", "size"), ("images[1]", "images[1]"), ("Idempotency-Key", "Idempotency-Key"),
    (None, None),
])
def test_native_field_names_become_openai_params(field: str | None, param: str | None) -> None:
    assert openai_errors.param_name(field) == param


@pytest.mark.parametrize(("refusal", "expected"), [
    (Refused(400, field="input.prompt"), (400, "invalid_request_error", "prompt",
                                          "invalid_value")),
    (Refused(400), (400, "invalid_request_error", None, None)),
    (Refused(401), (401, "invalid_request_error", None, "invalid_api_key")),
    (Refused(402), (429, "insufficient_quota", None, "insufficient_quota")),
    (Refused(403), (403, "invalid_request_error", "model", "model_not_allowed")),
    (Refused(404), (404, "invalid_request_error", "model", "model_not_found")),
    (Refused(409, field="Idempotency-Key"), (409, "invalid_request_error", "Idempotency-Key",
                                             "conflict")),
    (Refused(413), (413, "invalid_request_error", None, "request_too_large")),
    (Refused(415), (415, "invalid_request_error", None, None)),
    (Refused(429, retry_after=2), (429, "requests", None, "rate_limit_exceeded")),
    (Refused(503, retry_after=5), (503, "server_error", None, "service_unavailable")),
    (Refused(500), (500, "server_error", None, None)),
])
def test_refusals_map_to_openai_statuses_and_types(refusal: Refused,
                                                   expected: tuple[Any, ...]) -> None:
    error = openai_errors.refused(refusal)
    assert (error.status, error.type, error.param, error.code) == expected
    assert error.body() == {"error": {"message": "no", "type": expected[1],
                                      "param": expected[2], "code": expected[3]}}


def test_a_message_names_the_field_as_the_client_did() -> None:
    refusal = Refused(400, "input.num_images must be an integer from 1 to 4",
                      "input.num_images")
    assert openai_errors.refused(refusal).message == "n must be an integer from 1 to 4"


def test_retry_headers_say_when_to_and_whether_to_retry() -> None:
    assert openai_errors.refused(Refused(429, retry_after=1.2)).headers() == {"retry-after": "2"}
    assert openai_errors.refused(Refused(402)).headers() == {"x-should-retry": "false"}
    assert openai_errors.refused(Refused(409)).headers() == {"x-should-retry": "false"}
    assert openai_errors.refused(Refused(400)).headers() == {}


@pytest.mark.parametrize(("code", "expected"), [
    (FailCode.SENSITIVE_CONTENT, (400, "image_generation_user_error", "moderation_blocked")),
    (FailCode.PROMPT_INVALID, (400, "invalid_request_error", "invalid_prompt")),
    (FailCode.IMAGE_FORMAT_INCORRECT, (400, "invalid_request_error", "invalid_image")),
    (FailCode.MISSING_PARAMETER, (400, "invalid_request_error", "missing_parameter")),
    (FailCode.RATE_LIMITED, (429, "requests", "rate_limit_exceeded")),
    (FailCode.TIMEOUT, (504, "server_error", "timeout")),
    (FailCode.UNKNOWN, (500, "server_error", "server_error")),
    (FailCode.CANCELED, (409, "invalid_request_error", "task_canceled")),
])
def test_a_failed_task_maps_by_its_fail_code(code: str, expected: tuple[Any, ...]) -> None:
    task = make_task(state=TaskState.FAILED, fail_code=code, fail_msg="it went wrong")
    error = openai_errors.failed(task)
    assert (error.status, error.type, error.code) == expected
    assert task.id in error.message


def test_only_a_canceled_task_tells_the_sdk_not_to_retry() -> None:
    def retry(code: str) -> str | None:
        task = make_task(state=TaskState.FAILED, fail_code=code)
        return openai_errors.failed(task).headers().get("x-should-retry")

    assert retry(FailCode.CANCELED) == "false"
    assert {retry(c) for c in FailCode.ALL} == {None}


def test_a_wait_that_ran_out_names_the_task_and_forbids_a_retry() -> None:
    task = make_task(state=TaskState.RUNNING)
    error = openai_errors.unfinished(task, "nano-banana-2")
    assert (error.status, error.code) == (504, "timeout")
    assert f"statusTask/nano-banana-2?taskId={task.id}" in error.message
    assert error.headers() == {"x-should-retry": "false"}


# models ---------------------------------------------------------------------------------------

NAMES = {"nano-banana-2": "nano-banana-2", "nano-banana-pro": "nano-banana-pro",
         "gpt-image-1": "nano-banana-2", "gemini-3-pro-image": "nano-banana-pro"}


def test_the_model_list_names_every_id_and_alias_with_its_model() -> None:
    assert model_list(NAMES, None) == [
        {"id": "nano-banana-2", "object": "model", "created": 0, "owned_by": "imagegate"},
        {"id": "nano-banana-pro", "object": "model", "created": 0, "owned_by": "imagegate"},
        {"id": "gpt-image-1", "object": "model", "created": 0,
         "owned_by": "imagegate:nano-banana-2"},
        {"id": "gemini-3-pro-image", "object": "model", "created": 0,
         "owned_by": "imagegate:nano-banana-pro"}]


def test_the_model_list_keeps_to_the_models_a_key_may_use() -> None:
    assert [m["id"] for m in model_list(NAMES, ("nano-banana-pro",))] == [
        "nano-banana-pro", "gemini-3-pro-image"]

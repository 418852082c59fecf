"""The Gemini facade's translation: generateContent requests as native submit bodies
(facades/gemini.py) and tasks, refusals and the catalogue in Google's shapes
(facades/gemini_answers.py)."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from imagegate.app.generation import GeneratedImage, Generation
from imagegate.catalogue import ModelConfig
from imagegate.contract import ModelLimits, SubmitInput, parse_submit
from imagegate.errors import FailCode, InvalidRequest
from imagegate.facades.gemini import gemini_field, native_body
from imagegate.facades.gemini_answers import (
    answers_in_content,
    content_answer,
    failure,
    model_list,
    model_resource,
    refusal_error,
    wait_ran_out,
)
from imagegate.money import ChargeState
from imagegate.tasks import ResultFile, Task, TaskState

LIMITS = ModelLimits()
TEN = ModelLimits(ratios=("1:1", "16:9"), resolutions=("1k",), max_references=2)
PNG_B64 = base64.b64encode(b"\x89PNG fake").decode()


def user(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": list(parts)}


def request(*turns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"contents": list(turns or [user({"text": "a red fox"})]), **extra}


def inline(mime: str = "image/png", data: str = PNG_B64) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": data}}


def refused(body: Any, limits: ModelLimits = LIMITS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        native_body(body, limits)
    return caught.value


# Requests ------------------------------------------------------------------------------------


def test_text_alone_is_a_1k_text_to_image_task_at_auto_ratio() -> None:
    assert native_body(request(), LIMITS) == {"input": {
        "mode": "text-to-image", "prompt": "a red fox", "aspect_ratio": "auto",
        "resolution": "1k", "output_format": "png", "num_images": 1, "google_search": False}}


def test_the_sdks_request_maps_every_image_field() -> None:
    body = request(user({"text": "put them together"}, inline("image/jpeg"),
                        {"fileData": {"mimeType": "image/png",
                                      "fileUri": "https://img.example.com/b.png"}}),
                   generationConfig={"responseModalities": ["TEXT", "IMAGE"],
                                     "candidateCount": 2, "seed": 7, "temperature": 0.4,
                                     "thinkingConfig": {"thinkingLevel": "high"},
                                     "imageConfig": {"aspectRatio": "16:9", "imageSize": "4K"}},
                   tools=[{"googleSearch": {}}], safetySettings=[{"category": "X"}])
    native = native_body(body, LIMITS)
    assert native["input"] == {
        "mode": "image-to-image", "prompt": "put them together", "aspect_ratio": "16:9",
        "resolution": "4k", "output_format": "png", "num_images": 2, "google_search": True,
        "seed": 7, "image_urls": [f"data:image/jpeg;base64,{PNG_B64}",
                                  "https://img.example.com/b.png"]}
    parse_submit(native, LIMITS)  # a body the native validation takes as it is


def test_snake_case_fields_are_read_as_the_rest_api_reads_them() -> None:
    body = {"contents": [{"parts": [{"text": "edit"},
                                    {"inline_data": {"mime_type": "image/png",
                                                     "data": PNG_B64}}]}],
            "generation_config": {"image_config": {"aspect_ratio": "1:1",
                                                   "image_size": "2K"}}}
    native = native_body(body, LIMITS)["input"]
    assert (native["aspect_ratio"], native["resolution"], len(native["image_urls"])) == \
        ("1:1", "2k", 1)


def test_turns_join_user_text_and_keep_every_turns_images() -> None:
    body = request(user({"text": "a cat"}),
                   user({"text": "here it is"}, {"text": "thinking", "thought": True},
                        inline(data="TU9ERUw="), role="model"),
                   user({"text": "now make it blue"}, {"thoughtSignature": "c2ln"}),
                   systemInstruction={"parts": [{"text": "watercolour only"}]})
    native = native_body(body, LIMITS)["input"]
    assert native["prompt"] == "watercolour only\n\na cat\n\nnow make it blue"
    assert native["image_urls"] == ["data:image/png;base64,TU9ERUw="]


def test_url_safe_base64_becomes_a_standard_data_uri() -> None:
    native = native_body(request(user({"text": "x"}, inline(data="a-b_"))), LIMITS)
    assert native["input"]["image_urls"] == ["data:image/png;base64,a+b/"]


def test_a_negative_int32_seed_is_taken_as_its_unsigned_value() -> None:
    native = native_body(request(generationConfig={"seed": -1}), LIMITS)
    assert native["input"]["seed"] == 2**32 - 1


@pytest.mark.parametrize(("body", "field", "words"), [
    (request(generationConfig={"responseModalities": ["TEXT"]}),
     "generationConfig.responseModalities", "makes images"),
    (request(generationConfig={"imageConfig": {"aspectRatio": "7:3"}}),
     "generationConfig.imageConfig.aspectRatio", "must be one of"),
    (request(generationConfig={"imageConfig": {"imageSize": "8K"}}),
     "generationConfig.imageConfig.imageSize", "1K, 2K, 4K"),
    (request(generationConfig={"candidateCount": 0}), "generationConfig.candidateCount",
     "from 1 to"),
    (request(generationConfig={"seed": "7"}), "generationConfig.seed", "integer"),
    (request(tools=[{"codeExecution": {}}]), "tools[0]", "codeExecution"),
    (request(user({"text": "x"}, {"inlineData": {"mimeType": "application/pdf",
                                                 "data": "eA=="}})),
     "contents[0].parts[1].inlineData.mimeType", "image type"),
    (request(user({"text": "x"}, {"fileData": {"fileUri": "gs://bucket/a.png"}})),
     "contents[0].parts[1].fileData.fileUri", "http or https"),
    (request(user({"text": "x"}, {"fileData": {"fileUri": "https://a.example/b c\n.png"}})),
     "contents[0].parts[1].fileData.fileUri", "control characters"),
    (request(user({"text": 5})), "contents[0].parts[0].text", "string"),
    (request(user({"text": "x" * 20001})), "contents", "at most 20000"),
    (request(user({"text": "x"}, {"functionCall": {"name": "f"}})), "contents[0].parts[1]",
     "functionCall"),
    (request(user(inline())), "contents", "text part"),
    (request(user({"text": "x"}, role="tool")), "contents[0].role", "user or model"),
    ({"contents": []}, "contents", "non-empty"),
    (request(cachedContent="cachedContents/abc"), "cachedContent", "not supported"),
])
def test_what_cannot_make_an_image_is_refused_naming_the_field(
        body: dict[str, Any], field: str, words: str) -> None:
    error = refused(body)
    assert error.field == field and words in error.error


def test_a_models_own_limits_bound_the_request() -> None:
    assert refused(request(generationConfig={"imageConfig": {"imageSize": "2K"}}),
                   TEN).error.endswith("one of 1K for this model")
    assert "at most 2 reference" in refused(
        request(user({"text": "x"}, inline(), inline(), inline())), TEN).error


def test_native_fields_are_named_in_the_requests_terms() -> None:
    assert gemini_field("input.resolution") == "generationConfig.imageConfig.imageSize"
    assert gemini_field("input.prompt") == gemini_field("input.image_urls[3]") == "contents"
    assert gemini_field("callback_url") == "callback_url" and gemini_field(None) is None


# Answers -------------------------------------------------------------------------------------


def task(**changes: Any) -> Task:
    base = Task(id="0123456789abcdef0123456789abcdef", account_id="a", key_id="k",
                model="nano-banana-2",
                input=SubmitInput(mode="text-to-image", prompt="a fox", aspect_ratio="1:1",
                                  resolution="1k", output_format="png"),
                state=TaskState.SUCCEEDED, created_ms=1, price_micros=50_000,
                charge_state=ChargeState.SETTLED, result_token="t")
    return dataclasses.replace(base, **changes)


def image(name: str, data: bytes) -> GeneratedImage:
    return GeneratedImage(f"https://x/{name}", ResultFile(f"k/{name}", name, "image/png",
                                                          len(data), 8, 8), data)


def test_each_image_is_a_candidate_with_an_inline_part() -> None:
    made = Generation(task(), (image("0.png", b"one"), image("1.png", b"two")))
    answer = content_answer(made, "gemini-3.1-flash-image")
    assert answers_in_content(made)
    assert answer["modelVersion"] == "gemini-3.1-flash-image"
    assert answer["responseId"] == made.task.id
    assert [c["index"] for c in answer["candidates"]] == [0, 1]
    first = answer["candidates"][0]
    assert first["finishReason"] == "STOP" and first["content"]["role"] == "model"
    assert first["content"]["parts"] == [{"inlineData": {
        "mimeType": "image/png", "data": base64.b64encode(b"one").decode()}}]


def test_a_safety_failure_answers_an_image_safety_candidate() -> None:
    blocked = Generation(task(state=TaskState.FAILED, fail_code=FailCode.SENSITIVE_CONTENT,
                              fail_msg="blocked by the filters"))
    assert answers_in_content(blocked)
    assert content_answer(blocked, "m")["candidates"] == [
        {"finishReason": "IMAGE_SAFETY", "index": 0, "finishMessage": "blocked by the filters"}]


@pytest.mark.parametrize(("code", "status", "name"), [
    (FailCode.PROMPT_INVALID, 400, "INVALID_ARGUMENT"),
    (FailCode.IMAGE_FORMAT_INCORRECT, 400, "INVALID_ARGUMENT"),
    (FailCode.RATE_LIMITED, 429, "RESOURCE_EXHAUSTED"),
    (FailCode.TIMEOUT, 504, "DEADLINE_EXCEEDED"),
    (FailCode.CANCELED, 499, "CANCELLED"),
    (FailCode.UNKNOWN, 500, "INTERNAL"),
])
def test_other_failures_are_errors_with_googles_status(code: str, status: int,
                                                        name: str) -> None:
    failed = Generation(task(state=TaskState.FAILED, fail_code=code, fail_msg="why"))
    assert not answers_in_content(failed)
    error = failure(failed.task)
    assert error.code == status and error.body["error"]["status"] == name
    assert error.body["error"]["message"] == f"task {failed.task.id} failed ({code}): why"


def test_a_wait_that_ran_out_names_the_task_that_goes_on() -> None:
    error = wait_ran_out("t1", "nano-banana-2", 300)
    assert (error.code, error.body["error"]["status"]) == (504, "DEADLINE_EXCEEDED")
    assert "task t1 is still running after 300 s" in error.body["error"]["message"]
    assert "/api/v1/statusTask/nano-banana-2?taskId=t1" in error.body["error"]["message"]


def test_a_bad_key_is_answered_as_google_answers_it() -> None:
    error = refusal_error(401, "invalid or revoked API key")
    assert error.code == 400
    assert error.body["error"]["message"] == "API key not valid. Please pass a valid API key."
    assert error.body["error"]["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(("status", "code", "name"), [
    (402, 429, "RESOURCE_EXHAUSTED"), (403, 403, "PERMISSION_DENIED"), (404, 404, "NOT_FOUND"),
    (409, 409, "ABORTED"), (413, 400, "INVALID_ARGUMENT"), (415, 400, "INVALID_ARGUMENT"),
    (503, 503, "UNAVAILABLE"), (500, 500, "INTERNAL"), (502, 500, "INTERNAL"),
])
def test_refusals_take_googles_status(status: int, code: int, name: str) -> None:
    error = refusal_error(status, "no")
    assert (error.code, error.body) == (code, {"error": {"code": code, "message": "no",
                                                         "status": name}})


def test_a_bad_field_and_a_wait_are_in_the_details() -> None:
    bad = refusal_error(400, "too big", "generationConfig.imageConfig.imageSize")
    assert bad.body["error"]["details"] == [{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "generationConfig.imageConfig.imageSize",
                             "description": "too big"}]}]
    busy = refusal_error(429, "slow down", retry_after=2.2)
    assert busy.retry_after == 2.2
    assert busy.body["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]


# Models --------------------------------------------------------------------------------------

MODEL = ModelConfig("nano-banana-pro", ModelLimits(resolutions=("1k", "4k")), {}, ("sandbox",),
                    ("gemini-3-pro-image",))


def test_an_alias_is_a_resource_of_its_own_name() -> None:
    alias = model_resource("gemini-3-pro-image", MODEL)
    assert alias["name"] == "models/gemini-3-pro-image"
    assert alias["displayName"] == "Nano Banana Pro"
    assert "alias of imagegate model nano-banana-pro" in alias["description"]
    assert alias["supportedGenerationMethods"] == ["generateContent", "streamGenerateContent"]
    own = model_resource("nano-banana-pro", MODEL)
    assert own["displayName"] == "nano-banana-pro" and "1K, 4K" in own["description"]


def test_the_list_is_paged_by_offset_tokens() -> None:
    names = [{"name": f"models/m{i}"} for i in range(5)]
    first = model_list(names, "2", None)
    assert first == {"models": names[:2], "nextPageToken": "2"}
    assert model_list(names, "2", "4") == {"models": names[4:]}
    assert model_list(names, None, None) == {"models": names}
    with pytest.raises(InvalidRequest):
        model_list(names, None, "x")

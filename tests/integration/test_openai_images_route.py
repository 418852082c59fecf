"""The openai-images route (routes/openai_images.py) against a fake Images API server on loopback
(tests/fakes/openai_images_server.py): what is sent for each kind of task, how answers become
pictures of the exact table size, and how every refusal maps to a failCode."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fakes.openai_images_server import (
    Detail,
    Error,
    Hang,
    ImagesServer,
    Pictures,
    Raw,
    Step,
    openai_images_server,
)
from PIL import Image

from imagegate.config import Settings
from imagegate.contract import output_size
from imagegate.errors import ConfigError, FailCode, RouteError, RouteUnavailable
from imagegate.fetch import FetchedImage
from imagegate.picture_headers import EncodedPicture
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.openai_images import OpenAIImagesRoute
from imagegate.routes.registry import ROUTE_TYPES

MODEL = "black-forest-labs/FLUX.1-dev"
RED, GREEN = (200, 30, 30), (30, 200, 30)


def make_job(ratio: str = "1:1", resolution: str = "1k", **changes: Any) -> Job:
    width, height = output_size(ratio, resolution)
    job = Job(task_id="t1", model="flux", mode="text-to-image", prompt="a lighthouse at dusk",
              aspect_ratio=ratio, resolution=resolution, width=width, height=height,
              output_format="png")
    return dataclasses.replace(job, **changes)


def reference(size: tuple[int, int], color: tuple[int, int, int]) -> FetchedImage:
    return FetchedImage(f"https://img.example/{size[0]}.png", Image.new("RGB", size, color),
                        "PNG", 1000)


def options(server: ImagesServer, **more: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"base_url": server.base_url, "model": MODEL, **more}
    if server.api_key is not None and "api_key_env" not in more:
        table.setdefault("api_key", server.api_key)
    return table


def build(server: ImagesServer, client: httpx.AsyncClient, **more: Any) -> OpenAIImagesRoute:
    settings = Settings.load(env={})
    return OpenAIImagesRoute.from_options("engine", options(server, **more), client, settings)


def generate(server: ImagesServer, job: Job | None = None, **more: Any,
             ) -> Sequence[GeneratedImage]:
    async def go() -> Sequence[GeneratedImage]:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            return await build(server, client, **more).generate(job or make_job())
    return asyncio.run(go())


def failure(server: ImagesServer, steps: Sequence[Step], job: Job | None = None,
            **more: Any) -> RouteError:
    server.script(steps)
    with pytest.raises(RouteError) as caught:
        generate(server, job, **more)
    return caught.value


def check(server: ImagesServer, **more: Any) -> RouteCheck:
    async def go() -> RouteCheck:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            return await build(server, client, **more).check()
    return asyncio.run(go())


# What is sent ---------------------------------------------------------------------------------


def test_text_to_image_posts_one_generation_at_the_nearest_native_size() -> None:
    with openai_images_server(models=[MODEL]) as server:
        server.script([Pictures(color=RED)])
        images = generate(server, make_job("16:9", "2k"))
    [request] = server.requests
    assert request.endpoint == "generations"
    assert request.headers["authorization"] == f"Bearer {server.api_key}"
    assert request.fields == {"model": MODEL, "prompt": "a lighthouse at dusk", "n": 1,
                              "size": "1536x1024", "response_format": "b64_json"}
    [image] = images
    assert image.image.size == output_size("16:9", "2k") == (2752, 1536)
    assert image.image.getpixel((5, 5)) == RED
    assert image.note == (f"openai-images {MODEL}: asked for 1536x1024; resized and cropped "
                          "from 1536x1024 to 2752x1536")


def test_a_native_size_equal_to_the_table_size_is_delivered_as_it_is() -> None:
    with openai_images_server() as server:
        [image] = generate(server, make_job("1:1", "1k"))
    assert server.requests[0].size == "1024x1024"
    assert image.image.size == (1024, 1024)
    assert image.note == f"openai-images {MODEL}: asked for 1024x1024"


def answer_of(picture: bytes) -> Raw:
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(picture).decode()}]}
    return Raw(200, json.dumps(body).encode(), "application/json")


def encoded(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, RED if mode == "RGB" else 90).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_whole_picture_at_the_table_size_is_handed_over_undecoded(fmt: str) -> None:
    picture = encoded((1024, 1024), fmt)
    with openai_images_server() as server:
        server.script([answer_of(picture)])
        [image] = generate(server, make_job("1:1", "1k"))
    assert image.source == EncodedPicture(picture, fmt, 1024, 1024)
    assert image.size == (1024, 1024)
    assert image.note == f"openai-images {MODEL}: asked for 1024x1024"
    assert image.image.size == (1024, 1024)  # decodes when asked to
    assert all(abs(a - b) < 4 for a, b in zip(image.image.getpixel((5, 5)), RED, strict=True))


def test_a_picture_not_at_the_table_size_or_not_keepable_is_decoded_and_fitted() -> None:
    with openai_images_server() as server:
        server.script([answer_of(encoded((1536, 1024))), answer_of(encoded((1024, 1024),
                                                                           mode="L"))])
        [wide] = generate(server, make_job("16:9", "2k"))
        [grey] = generate(server, make_job("1:1", "1k"))
    assert isinstance(wide.source, Image.Image) and wide.size == (2752, 1536)
    assert isinstance(grey.source, Image.Image) and grey.size == (1024, 1024)
    assert grey.image.mode == "RGB" and grey.image.getpixel((3, 3)) == (90, 90, 90)


def test_a_truncated_picture_at_the_table_size_fails_the_attempt_retryably() -> None:
    picture = encoded((1024, 1024))
    with openai_images_server() as server:
        error = failure(server, [answer_of(picture[: len(picture) // 2])])
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.UNKNOWN, True, True)
    assert "the picture is unusable" in error.message


def test_sizes_option_picks_the_nearest_shape_then_area() -> None:
    sizes = ["512x512", "1328x1328", "1664x928", "928x1664"]
    with openai_images_server(sizes=sizes) as server:
        generate(server, make_job("9:16", "1k"), sizes=sizes)
        generate(server, make_job("1:1", "2k"), sizes=sizes)
        generate(server, make_job("1:1", "1k"), sizes=sizes)
    assert [r.size for r in server.requests] == ["928x1664", "1328x1328", "1328x1328"]


def test_image_to_image_posts_an_edit_with_each_reference_as_a_file() -> None:
    refs = (reference((640, 480), RED), reference((300, 500), GREEN))
    job = make_job("4:3", "1k", mode="image-to-image", references=refs)
    with openai_images_server() as server:
        [image] = generate(server, job, max_references=2)
    [request] = server.requests
    assert request.endpoint == "edits"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.fields == {"model": MODEL, "prompt": "a lighthouse at dusk", "n": "1",
                              "size": "1536x1024", "response_format": "b64_json"}
    assert [(f, name, img.size, img.getpixel((1, 1))) for f, name, img in request.files] == [
        ("image", "reference-1.png", (640, 480), RED),
        ("image", "reference-2.png", (300, 500), GREEN)]
    assert image.image.size == output_size("4:3", "1k")


def test_image_field_and_max_references_shape_the_edit_form() -> None:
    refs = tuple(reference((64, 64), RED) for _ in range(3))
    job = make_job(mode="image-to-image", references=refs)
    with openai_images_server() as server:
        generate(server, job, max_references=2, image_field="image[]")
    assert [f for f, _, _ in server.requests[0].files] == ["image[]", "image[]"]


def test_num_images_beyond_max_n_is_split_over_calls_with_seeds_that_do_not_repeat() -> None:
    with openai_images_server() as server:
        images = generate(server, make_job(num_images=3, seed=7), max_n=2, send_seed=True)
    sent = sorted((r.fields["n"], r.fields["seed"]) for r in server.requests)
    assert sent == [(1, 9), (2, 7)]
    assert len(images) == 3
    assert sorted(i.note.rsplit("; ", 1)[1] for i in images) == [
        "seed 7 (picture 1 of its request)", "seed 7 (picture 2 of its request)",
        "seed 9 (picture 1 of its request)"]


def test_one_call_asks_for_every_picture_when_max_n_allows() -> None:
    with openai_images_server() as server:
        images = generate(server, make_job(num_images=4, seed=7))
    [request] = server.requests
    assert request.fields["n"] == 4 and "seed" not in request.fields  # send_seed is off
    assert len(images) == 4


def test_extra_body_and_output_format_reach_generations_and_edits() -> None:
    extra = {"num_inference_steps": 28, "guidance_scale": 3.5, "negative_prompt": "blur",
             "enable_teacache": True}
    edit = make_job(mode="image-to-image", references=(reference((64, 64), RED),),
                    output_format="jpg")
    with openai_images_server() as server:
        generate(server, make_job(), extra_body=extra, output_format="task")
        generate(server, edit, extra_body=extra, output_format="task", send_model=False,
                 response_format="none")
    generation, edit_request = server.requests
    assert generation.fields == {**extra, "model": MODEL, "prompt": "a lighthouse at dusk",
                                 "n": 1, "size": "1024x1024", "response_format": "b64_json",
                                 "output_format": "png"}
    assert edit_request.fields == {"num_inference_steps": "28", "guidance_scale": "3.5",
                                   "negative_prompt": "blur", "enable_teacache": "true",
                                   "prompt": "a lighthouse at dusk", "n": "1",
                                   "size": "1024x1024", "output_format": "jpeg"}


def test_a_route_without_a_key_sends_no_authorization() -> None:
    with openai_images_server(api_key=None) as server:
        generate(server)
    assert "authorization" not in server.requests[0].headers


def test_the_key_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with openai_images_server() as server:
        monkeypatch.setenv("ENGINE_KEY", str(server.api_key))
        generate(server, api_key_env="ENGINE_KEY")
    assert server.requests[0].headers["authorization"] == f"Bearer {server.api_key}"


# Answers as URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["relative", "absolute"])
def test_a_picture_on_the_route_s_own_server_is_downloaded_with_its_key(url: str) -> None:
    with openai_images_server() as server:
        server.script([Pictures(color=GREEN, url=url)])
        [image] = generate(server, response_format="url")
    assert server.requests[0].fields["response_format"] == "url"
    [(path, authorization)] = server.downloads
    assert path.startswith("/v1/images/") and authorization == f"Bearer {server.api_key}"
    assert image.image.getpixel((3, 3)) == GREEN


def test_a_picture_on_another_private_host_is_refused_without_private_results(
        caplog: pytest.LogCaptureFixture) -> None:
    with openai_images_server() as server:
        with caplog.at_level(logging.WARNING, logger="imagegate.routes.openai_images"):
            error = failure(server, [Pictures(url="other-host")], response_format="url")
    assert error.fail_code == FailCode.UNKNOWN and error.failover and not error.retryable
    assert "non-public address; not downloaded" in error.message
    assert "127.0.0.1" not in error.message and "127.0.0.1" in caplog.text
    assert server.downloads == []


def test_private_results_downloads_another_host_s_picture_without_the_key() -> None:
    with openai_images_server() as server:
        server.script([Pictures(color=RED, url="other-host")])
        [image] = generate(server, response_format="url", private_results=True)
    [(_, authorization)] = server.downloads
    assert authorization is None  # the key goes to the route's own server only
    assert image.image.getpixel((3, 3)) == RED


# Errors ---------------------------------------------------------------------------------------

SET_UP = (FailCode.UNKNOWN, False, True)
FINAL = False, False


@pytest.mark.parametrize(("step", "expected"), [
    (Error(400, "Your request was rejected as a result of our safety system.",
           code="moderation_blocked", type="image_generation_user_error"),
     (FailCode.SENSITIVE_CONTENT, *FINAL)),
    (Error(400, "Your prompt may contain text that is not allowed.",
           code="content_policy_violation"), (FailCode.SENSITIVE_CONTENT, *FINAL)),
    (Error(400, "Invalid image file or mode for image 1.", param="image",
           code="invalid_image_format"), (FailCode.IMAGE_FORMAT_INCORRECT, *FINAL)),
    (Detail(400, "Failed to decode input image: cannot identify image file"),
     (FailCode.IMAGE_FORMAT_INCORRECT, *FINAL)),
    (Error(413, "Request entity too large"), (FailCode.IMAGE_FORMAT_INCORRECT, *FINAL)),
    (Error(400, "The prompt is too long: 40000 characters.", param="prompt"),
     (FailCode.PROMPT_INVALID, *FINAL)),
    (Detail(422, [{"loc": ["body", "prompt"], "msg": "field required",
                   "type": "value_error.missing"}]), (FailCode.PROMPT_INVALID, *FINAL)),
    (Error(400, "Unknown parameter: 'seed'.", param="seed", code="unknown_parameter"), SET_UP),
    (Error(400, "Invalid value: '1536x1024'.", param="size", code="invalid_value"), SET_UP),
    (Error(401, "Incorrect API key provided.", code="invalid_api_key"), SET_UP),
    (Error(403, "Your organization must be verified to use this model."), SET_UP),
    (Error(429, "You exceeded your current quota.", code="insufficient_quota"), SET_UP),
    (Detail(405, "Method Not Allowed"), SET_UP),
    (Error(500, "The server had an error while processing your request.", type="server_error"),
     (FailCode.UNKNOWN, True, True)),
    (Detail(503, "Diffusion engine not initialized."), (FailCode.UNKNOWN, True, True)),
    (Raw(502, b"<html>Bad Gateway</html>", "text/html"), (FailCode.UNKNOWN, True, True)),
    (Error(504, "Gateway timeout"), (FailCode.TIMEOUT, True, True)),
    (Raw(200, b"not json"), (FailCode.UNKNOWN, True, True)),
    (Raw(200, b'{"data": [{"b64_json": "%%%"}]}', "application/json"),
     (FailCode.UNKNOWN, True, True)),
    (Raw(200, b'{"data": [{"b64_json": "aGVsbG8="}]}', "application/json"),
     (FailCode.UNKNOWN, True, True)),
    (Pictures(count=0), (FailCode.UNKNOWN, True, True)),
])
def test_each_refusal_maps_to_its_fail_code(step: Step,
                                            expected: tuple[str, bool, bool]) -> None:
    with openai_images_server() as server:
        error = failure(server, [step])
    assert (error.fail_code, error.retryable, error.failover) == expected
    assert not isinstance(error, RouteUnavailable)


def test_a_rate_limit_is_retryable_after_the_delay_asked_for() -> None:
    with openai_images_server() as server:
        error = failure(server, [Error(429, "Rate limit reached for images per minute.",
                                       code="rate_limit_exceeded", retry_after="3")])
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.RATE_LIMITED, True,
                                                                  True)
    assert error.retry_after == 3.0


def test_a_model_the_server_does_not_serve_makes_the_route_unavailable() -> None:
    with openai_images_server(models=["Qwen/Qwen-Image"]) as server:
        error = failure(server, [])
    assert isinstance(error, RouteUnavailable)
    assert f"does not serve model {MODEL}" in error.message and error.failover


def test_an_edits_endpoint_the_server_lacks_is_a_set_up_error() -> None:
    job = make_job(mode="image-to-image", references=(reference((64, 64), RED),))

    async def go() -> RouteError:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            route = build(server, client)
            route.config = dataclasses.replace(route.config, base_url=server.base_url + "/x")
            with pytest.raises(RouteError) as caught:
                await route.generate(job)
            return caught.value

    with openai_images_server() as server:
        error = asyncio.run(go())
    assert (error.fail_code, error.retryable, error.failover) == SET_UP
    assert not isinstance(error, RouteUnavailable)


def test_a_slow_server_times_out() -> None:
    with openai_images_server() as server:
        error = failure(server, [Hang(5.0)], timeout_seconds=0.3)
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.TIMEOUT, True, True)


def test_a_server_that_is_down_is_a_retryable_unknown_error() -> None:
    with openai_images_server() as server:
        base_url = server.base_url
    route_options = {"base_url": base_url, "model": MODEL}

    async def go() -> RouteError:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            route = OpenAIImagesRoute.from_options("engine", route_options, client,
                                                   Settings.load(env={}))
            with pytest.raises(RouteError) as caught:
                await route.generate(make_job())
            return caught.value

    error = asyncio.run(go())
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.UNKNOWN, True, True)
    assert "could not connect" in error.message


def test_the_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with openai_images_server() as server:
        key = str(server.api_key)
        error = failure(server, [Error(401, f"Incorrect API key provided: {key}.")])
        route_repr = repr(build(server, httpx.AsyncClient()))
    assert key not in error.message and "[redacted]" in error.message
    assert key not in caplog.text and key not in route_repr


# Checking -------------------------------------------------------------------------------------


def test_check_finds_the_model_in_the_server_s_list() -> None:
    with openai_images_server(models=[MODEL, "other"]) as server:
        result = check(server)
    assert result.available is True and server.model_lists == 1


def test_check_marks_a_model_missing_from_the_list_unavailable() -> None:
    with openai_images_server(models=["Qwen/Qwen-Image-Edit"]) as server:
        result = check(server)
    assert result.available is False
    assert f"does not serve model {MODEL}" in result.detail
    assert "Qwen/Qwen-Image-Edit" in result.detail


@pytest.mark.parametrize("how", ["no listing", "wrong key", "down"])
def test_check_gives_no_verdict_when_the_list_cannot_be_had(how: str) -> None:
    with openai_images_server(list_models=how != "no listing") as server:
        more = {"api_key": "sk-wrong"} if how == "wrong key" else {}
        if how == "down":
            more["base_url"] = "http://127.0.0.1:9"
        result = check(server, **more)
    assert result.available is None, result


# Options --------------------------------------------------------------------------------------


def test_the_route_type_is_registered_and_declares_its_capabilities() -> None:
    kind = ROUTE_TYPES["openai-images"]
    assert kind.declared_capabilities("e", {"base_url": "http://x", "model": "m"}) == \
        Capabilities(max_references=1)
    t2i_only = kind.declared_capabilities("e", {"modes": ["text-to-image"]})
    assert t2i_only.modes == ("text-to-image",)
    assert kind.declared_capabilities("e", {"max_references": 0}).modes == ("text-to-image",)


def test_base_url_may_end_in_v1() -> None:
    settings = Settings.load(env={})
    route = OpenAIImagesRoute.from_options(
        "e", {"base_url": "http://127.0.0.1:30000/v1/", "model": "m"}, httpx.AsyncClient(),
        settings)
    assert route.config.base_url == "http://127.0.0.1:30000"


@pytest.mark.parametrize(("table", "where"), [
    ({"model": "m"}, "routes.e.base_url"),
    ({"base_url": "ftp://x", "model": "m"}, "routes.e.base_url"),
    ({"base_url": "http://x"}, "routes.e.model"),
    ({"base_url": "http://x", "model": "m", "sizes": ["1024"]}, "routes.e.sizes"),
    ({"base_url": "http://x", "model": "m", "sizes": []}, "routes.e.sizes"),
    ({"base_url": "http://x", "model": "m", "extra_body": {"prompt": "x"}},
     "routes.e.extra_body.prompt"),
    ({"base_url": "http://x", "model": "m", "extra_body": {"steps": [1]}},
     "routes.e.extra_body.steps"),
    ({"base_url": "http://x", "model": "m", "response_format": "file"},
     "routes.e.response_format"),
    ({"base_url": "http://x", "model": "m", "image_field": "images"}, "routes.e.image_field"),
    ({"base_url": "http://x", "model": "m", "max_n": 0}, "routes.e.max_n"),
    ({"base_url": "http://x", "model": "m", "api_key": "k", "api_key_env": "K"},
     "routes.e.api_key"),
    ({"base_url": "http://x", "model": "m", "api_key_env": "IMAGEGATE_TEST_UNSET_KEY"},
     "routes.e.api_key_env"),
    ({"base_url": "http://x", "model": "m", "poll_interval_seconds": 1}, "routes.e.poll"),
])
def test_bad_options_are_refused_by_name(table: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OpenAIImagesRoute.from_options("e", table, httpx.AsyncClient(), Settings.load(env={}))
    assert where in str(caught.value)

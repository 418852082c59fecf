"""The Gemini route (routes/gemini.py) against a fake Gemini API on loopback: the request it
sends, the image it takes, and how each upstream failure maps to a failCode
(docs/contract.md §7)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fakes.gemini_server import (
    Blocked,
    Error,
    Finish,
    GeminiServer,
    Hang,
    Image,
    NoCandidates,
    NoImage,
    Raw,
    TextOnly,
    ThoughtsThenImage,
    gemini_server,
)
from PIL import Image as PILImage

from imagegate.config import Settings
from imagegate.contract import RATIOS, output_size
from imagegate.errors import ConfigError, FailCode, RouteError, RouteUnavailable
from imagegate.fetch import FetchedImage
from imagegate.routes.base import GeneratedImage, Job, RouteCheck
from imagegate.routes.gemini import TEN_RATIOS, GeminiRoute, default_capabilities

MODEL = "gemini-3.1-flash-image-preview"
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


@pytest.fixture
def gemini() -> Iterator[GeminiServer]:
    with gemini_server() as server:
        yield server


def make_job(**changes: Any) -> Job:
    width, height = output_size("16:9", "2k")
    job = Job(task_id="t1", model="nano-banana-2", mode="text-to-image",
              prompt="a lighthouse at dusk", aspect_ratio="16:9", resolution="2k",
              width=width, height=height, output_format="png")
    return dataclasses.replace(job, **changes)


async def _generate(server: GeminiServer, job: Job, **options: Any) -> list[GeneratedImage]:
    options = {"api_key": server.api_key, "model": MODEL, "base_url": server.base_url, **options}
    async with httpx.AsyncClient(trust_env=False) as client:
        return await GeminiRoute("gemini", client, **options).generate(job)


def generate(server: GeminiServer, job: Job | None = None, **options: Any,
             ) -> list[GeneratedImage]:
    return asyncio.run(_generate(server, job or make_job(), **options))


def failure(server: GeminiServer, job: Job | None = None, **options: Any) -> RouteError:
    with pytest.raises(RouteError) as caught:
        generate(server, job, **options)
    return caught.value


def reference(image: PILImage.Image) -> FetchedImage:
    return FetchedImage("https://example.test/ref.png", image, "PNG", 1000)


def near(pixel: Any, color: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=False))


# The request ----------------------------------------------------------------------------------


def test_success_sends_the_documented_request_shape(gemini: GeminiServer) -> None:
    gemini.script([Image(size=(1376, 768), color=GREEN, text="Here is your lighthouse.")])
    [result] = generate(gemini)
    assert result.image.size == (1376, 768)
    assert near(result.image.getpixel((10, 10)), GREEN, 0)
    assert result.note == f"gemini {MODEL}: 1376x768"
    [sent] = gemini.requests
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.query == "" and gemini.api_key not in sent.path
    assert sent.headers["x-goog-api-key"] == gemini.api_key
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                             "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}},
    }


def test_image_size_is_left_out_for_gemini_2_5_models(gemini: GeminiServer) -> None:
    job = make_job(resolution="1k", aspect_ratio="3:2")
    [result] = generate(gemini, job, model="gemini-2.5-flash-image")
    assert gemini.requests[0].image_config == {"aspectRatio": "3:2"}
    assert result.image.size == output_size("3:2", "1k", "gemini-2.5")


def test_image_size_can_be_forced_either_way(gemini: GeminiServer) -> None:
    generate(gemini, make_job(resolution="4k"), send_image_size=False)
    generate(gemini, make_job(resolution="1k"), model="gemini-2.5-flash-image",
             send_image_size=True)
    assert [r.image_config.get("imageSize") for r in gemini.requests] == [None, "1K"]


def test_search_tool_is_sent_only_when_asked(gemini: GeminiServer) -> None:
    generate(gemini, make_job(google_search=True))
    generate(gemini, make_job(google_search=False))
    assert gemini.requests[0].tools == [{"google_search": {}}]
    assert "tools" not in (gemini.requests[1].body or {})


def test_references_are_sent_inline_after_the_prompt(gemini: GeminiServer) -> None:
    opaque = PILImage.new("RGB", (64, 48), RED)
    clear = PILImage.new("RGBA", (32, 40), (*GREEN, 128))
    job = make_job(mode="image-to-image", references=(reference(opaque), reference(clear)))
    generate(gemini, job)
    [sent] = gemini.requests
    assert sent.parts[0] == {"text": "a lighthouse at dusk"}
    assert [p["mimeType"] for p in sent.inline_parts] == ["image/jpeg", "image/png"]
    first, second = sent.references
    assert first.size == (64, 48) and near(first.getpixel((5, 5)), RED)
    assert second.size == (32, 40) and second.getpixel((5, 5)) == (*GREEN, 128)


def test_large_reference_is_downscaled_within_max_inline_bytes(gemini: GeminiServer) -> None:
    noise = PILImage.frombytes("RGB", (800, 600), os.urandom(800 * 600 * 3))
    job = make_job(mode="image-to-image", references=(reference(noise),))
    generate(gemini, job, max_inline_bytes=60_000)
    [sent] = gemini.requests
    [got] = sent.references
    assert len(base64.b64decode(sent.inline_parts[0]["data"])) <= 60_000
    assert got.width < 800 and abs(got.width / got.height - 800 / 600) < 0.02


def test_reference_that_cannot_fit_fails_before_any_call(gemini: GeminiServer) -> None:
    noise = PILImage.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    job = make_job(mode="image-to-image", references=(reference(noise),))
    error = failure(gemini, job, max_inline_bytes=100)
    assert error.fail_code == FailCode.IMAGE_FORMAT_INCORRECT
    assert "reference image 1" in error.message
    assert gemini.requests == []


# The answer -----------------------------------------------------------------------------------


def test_thought_images_are_skipped_for_the_final_one(gemini: GeminiServer) -> None:
    gemini.script([ThoughtsThenImage(thought_colors=(RED, GREEN), color=BLUE, size=(64, 64))])
    [result] = generate(gemini)
    assert near(result.image.getpixel((1, 1)), BLUE, 0)


def test_snake_case_inline_data_is_accepted(gemini: GeminiServer) -> None:
    gemini.script([Image(size=(48, 48), color=RED, mime="image/jpeg", snake_case=True)])
    [result] = generate(gemini)
    assert result.image.size == (48, 48) and near(result.image.getpixel((8, 8)), RED)


def test_num_images_makes_that_many_calls(gemini: GeminiServer) -> None:
    gemini.script([Image(size=(32, 32), color=RED), Image(size=(32, 32), color=BLUE)])
    results = generate(gemini, make_job(num_images=2))
    assert len(results) == 2 and len(gemini.requests) == 2
    colors = {r.image.getpixel((1, 1)) for r in results}
    assert colors == {RED, BLUE}


def test_one_failed_call_fails_the_whole_job(gemini: GeminiServer) -> None:
    gemini.script([Image(size=(32, 32)), Error(500, "INTERNAL")])
    error = failure(gemini, make_job(num_images=2))
    assert error.fail_code == FailCode.UNKNOWN


def test_first_failure_cancels_the_other_calls(gemini: GeminiServer) -> None:
    gemini.script([Hang(5), Error(503, "UNAVAILABLE")] * 2)  # whichever call gets which
    error = failure(gemini, make_job(num_images=2), timeout_s=4)
    assert error.fail_code == FailCode.UNKNOWN  # not Timeout: nobody waited for the hang


# Failures -------------------------------------------------------------------------------------


def test_blocked_prompt_is_sensitive_content_without_failover(gemini: GeminiServer) -> None:
    gemini.script([Blocked(reason="PROHIBITED_CONTENT")])
    error = failure(gemini)
    assert error.fail_code == FailCode.SENSITIVE_CONTENT
    assert "PROHIBITED_CONTENT" in error.message
    assert not error.retryable and not error.failover


@pytest.mark.parametrize("reason", ["IMAGE_SAFETY", "SAFETY", "IMAGE_PROHIBITED_CONTENT",
                                    "IMAGE_RECITATION"])
def test_blocked_output_is_sensitive_content(gemini: GeminiServer, reason: str) -> None:
    gemini.script([Finish(reason)])
    error = failure(gemini)
    assert error.fail_code == FailCode.SENSITIVE_CONTENT and reason in error.message
    assert not error.retryable and not error.failover


@pytest.mark.parametrize("step", [NoImage(), Finish("IMAGE_OTHER"), Finish("OTHER"),
                                  NoCandidates()], ids=repr)
def test_no_image_is_a_retryable_unknown_error(gemini: GeminiServer, step: Any) -> None:
    gemini.script([step])
    error = failure(gemini)
    assert error.fail_code == FailCode.UNKNOWN
    assert error.retryable and error.failover


def test_text_without_image_is_unknown_error_quoting_the_text(gemini: GeminiServer) -> None:
    gemini.script([TextOnly("I can't draw that, but here is a poem. " * 20)])
    error = failure(gemini)
    assert error.fail_code == FailCode.UNKNOWN and error.retryable
    assert "I can't draw that" in error.message and len(error.message) < 300


def test_rate_limit_takes_the_delay_from_retry_info(gemini: GeminiServer) -> None:
    gemini.script([Error(429, "RESOURCE_EXHAUSTED", retry_delay="1s", retry_after="30")])
    error = failure(gemini)
    assert error.fail_code == FailCode.RATE_LIMITED
    assert error.retry_after == 1.0 and error.retryable and error.failover


def test_rate_limit_falls_back_to_the_retry_after_header(gemini: GeminiServer) -> None:
    gemini.script([Error(429, "RESOURCE_EXHAUSTED", retry_after="7")])
    assert failure(gemini).retry_after == 7.0


@pytest.mark.parametrize("status", ["INTERNAL", "UNAVAILABLE"])
def test_server_error_is_unknown_error_with_failover(gemini: GeminiServer, status: str) -> None:
    gemini.script([Error(500 if status == "INTERNAL" else 503, status)])
    error = failure(gemini)
    assert error.fail_code == FailCode.UNKNOWN and error.retryable and error.failover
    assert status in error.message


def test_deadline_exceeded_is_timeout(gemini: GeminiServer) -> None:
    gemini.script([Error(504, "DEADLINE_EXCEEDED")])
    error = failure(gemini)
    assert error.fail_code == FailCode.TIMEOUT and error.retryable


def test_hanging_upstream_is_timeout(gemini: GeminiServer) -> None:
    gemini.script([Hang(5)])
    error = failure(gemini, timeout_s=0.5)
    assert error.fail_code == FailCode.TIMEOUT and error.retryable and error.failover


def test_bad_input_image_is_image_format_incorrect(gemini: GeminiServer) -> None:
    gemini.script([Error(400, "INVALID_ARGUMENT", "Unable to process input image. Please retry "
                         "or report in https://developers.generativeai.google/guide/"
                         "troubleshooting")])
    error = failure(gemini)
    assert error.fail_code == FailCode.IMAGE_FORMAT_INCORRECT
    assert "Unable to process input image" in error.message
    assert not error.retryable and not error.failover


def test_other_invalid_argument_is_prompt_invalid(gemini: GeminiServer) -> None:
    gemini.script([Error(400, "INVALID_ARGUMENT")])
    error = failure(gemini)
    assert error.fail_code == FailCode.PROMPT_INVALID
    assert not error.retryable and not error.failover


def test_answer_that_is_not_json_is_a_retryable_unknown_error(gemini: GeminiServer) -> None:
    gemini.script([Raw(200, b"<html>proxy error</html>", "text/html")])
    error = failure(gemini)
    assert error.fail_code == FailCode.UNKNOWN and error.retryable


def test_unreachable_api_is_a_retryable_unknown_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = make_job()
    with pytest.raises(RouteError) as caught:
        asyncio.run(_generate_at(f"http://127.0.0.1:{port}", job))
    assert caught.value.fail_code == FailCode.UNKNOWN and caught.value.retryable


async def _generate_at(base_url: str, job: Job) -> list[GeneratedImage]:
    async with httpx.AsyncClient(trust_env=False) as client:
        route = GeminiRoute("gemini", client, api_key="k", model=MODEL, base_url=base_url)
        return await route.generate(job)


# A route that cannot work: fail over, never retry, never show the key -------------------------


def test_wrong_key_fails_over_without_retry_and_never_shows_the_key(
        gemini: GeminiServer, caplog: pytest.LogCaptureFixture) -> None:
    secret = "AIza-wrong-secret-key-987654321"
    caplog.set_level(logging.DEBUG)
    error = failure(gemini, api_key=secret)
    assert error.fail_code == FailCode.UNKNOWN
    assert not error.retryable and error.failover
    assert "API key not valid" in error.message
    shown = [str(error), error.message, repr(error), caplog.text,
             *(r.getMessage() for r in caplog.records)]
    assert not any(secret in text for text in shown)
    assert any("not usable" in r.getMessage() for r in caplog.records)
    assert all(secret not in r.path + r.query for r in gemini.requests)


def test_upstream_text_echoing_the_key_is_scrubbed(gemini: GeminiServer) -> None:
    gemini.script([Error(500, "INTERNAL", f"backend rejected {gemini.api_key} today")])
    error = failure(gemini)
    assert gemini.api_key not in str(error) and "[redacted]" in error.message


def test_unknown_model_fails_over_without_retry() -> None:
    with gemini_server(models=[MODEL]) as server:
        error = failure(server, model="gemini-9-imaginary")
    assert error.fail_code == FailCode.UNKNOWN and not error.retryable and error.failover
    assert "NOT_FOUND" in error.message


@pytest.mark.parametrize("code,status", [(403, "PERMISSION_DENIED"),
                                         (400, "FAILED_PRECONDITION"), (401, "UNAUTHENTICATED")])
def test_refused_project_fails_over_without_retry(gemini: GeminiServer, code: int,
                                                  status: str) -> None:
    gemini.script([Error(code, status, "User location is not supported for the API use.")])
    error = failure(gemini)
    assert error.fail_code == FailCode.UNKNOWN and not error.retryable and error.failover


# Capabilities and configuration ---------------------------------------------------------------


def test_default_capabilities_follow_the_model() -> None:
    flash = default_capabilities("gemini-3.1-flash-image-preview")
    pro = default_capabilities("gemini-3-pro-image-preview")
    legacy = default_capabilities("gemini-2.5-flash-image")
    assert flash.ratios == RATIOS and pro.ratios == TEN_RATIOS == legacy.ratios
    assert flash.resolutions == pro.resolutions == ("1k", "2k", "4k")
    assert legacy.resolutions == ("1k",)
    assert flash.search_grounding and pro.search_grounding and not legacy.search_grounding
    assert flash.official and legacy.official and flash.max_references == 14


@pytest.fixture
def client() -> Iterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(trust_env=False)
    yield client
    asyncio.run(client.aclose())


def test_from_options_takes_key_and_endpoint_from_settings(client: httpx.AsyncClient) -> None:
    settings = Settings(gemini_api_key="from-settings", gemini_base_url="https://proxy.test/")
    options = {"model": "gemini-3-pro-image-preview", "cost": {"1k": "0.134", "4k": 0.24},
               "official": False, "timeout_seconds": 30, "max_references": 6}
    route = GeminiRoute.from_options("pro", options, client, settings)
    assert route.name == "pro" and route.model == "gemini-3-pro-image-preview"
    assert route.timeout_s == 30.0 and route.send_image_size
    assert route.capabilities.cost_micros == {"1k": 134_000, "4k": 240_000}
    assert not route.capabilities.official and route.capabilities.max_references == 6
    assert route.capabilities.search_grounding
    assert "from-settings" not in repr(route)


def test_from_options_own_key_and_limits_win(client: httpx.AsyncClient) -> None:
    options = {"model": "gemini-2.5-flash-image", "api_key": "own", "search_grounding": True,
               "resolutions": ["1k"], "ratios": ["1:1", "16:9"], "send_image_size": False}
    route = GeminiRoute.from_options("g", options, client, Settings(gemini_api_key="global"))
    assert route.capabilities.ratios == ("1:1", "16:9")
    assert route.capabilities.search_grounding and not route.send_image_size


@pytest.mark.parametrize("options,named", [
    ({"model": "gemini-3-pro-image-preview"}, "routes.g.api_key"),
    ({"api_key": "k"}, "routes.g.model"),
    ({"model": "m", "api_key": "k", "colour": "blue"}, "routes.g.colour"),
    ({"model": "m", "api_key": "k", "timeout_seconds": 0}, "routes.g.timeout_seconds"),
    ({"model": "m", "api_key": "k", "official": "yes"}, "routes.g.official"),
    ({"model": "m", "api_key": "k", "resolutions": ["8k"]}, "routes.g.resolutions"),
    ({"model": "m", "api_key": "k", "cost": {"1k": "cheap"}}, "routes.g.cost.1k"),
    ({"model": "m", "api_key": "k", "cost": {"1k": "-1"}}, "routes.g.cost.1k"),
    ({"model": "gemini-2.5-flash-image", "api_key": "k", "cost": {"4k": "1"}},
     "routes.g.cost.4k"),
    ({"model": "m", "api_key": "k", "max_references": 15}, "routes.g.max_references"),
    ({"model": "m", "api_key": "k", "base_url": "ftp://x"}, "routes.g.base_url"),
], ids=lambda v: str(v)[:40])
def test_from_options_refuses_bad_config_by_name(client: httpx.AsyncClient,
                                                 options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        GeminiRoute.from_options("g", options, client, Settings())


def test_from_options_never_echoes_a_misconfigured_key(client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError) as caught:
        GeminiRoute.from_options("g", {"model": "m", "api_key": 123456789}, client, Settings())
    assert "123456789" not in str(caught.value)


# Thinking level -------------------------------------------------------------------------------


def test_thinking_level_is_sent_in_the_enum_spelling(gemini: GeminiServer) -> None:
    generate(gemini, model="gemini-nano-banana-2.1", thinking_level="minimal")
    generate(gemini, model="gemini-nano-banana-2.1")
    assert gemini.requests[0].generation_config["thinkingConfig"] == {"thinkingLevel": "MINIMAL"}
    assert "thinkingConfig" not in gemini.requests[1].generation_config
    assert all(r.refusal is None for r in gemini.requests)


@pytest.mark.parametrize("model,level,accepted", [
    ("gemini-nano-banana-2.1", "medium", True),
    ("gemini-nano-banana-2.1", "HIGH", True),
    ("gemini-3.1-flash-lite-image", "minimal", True),
    ("gemini-3.1-flash-lite-image", "medium", False),
    ("gemini-3.1-flash-image", "medium", False),
    ("gemini-3-pro-image", "high", False),  # its thinking is fixed
    ("gemini-9-future-image", "low", True),  # unknown: any level; Google judges
    ("gemini-nano-banana-2.1", "maximal", False),
])
def test_thinking_level_option_is_checked_against_the_model(
        client: httpx.AsyncClient, model: str, level: str, accepted: bool) -> None:
    options = {"model": model, "api_key": "k", "thinking_level": level}
    if accepted:
        route = GeminiRoute.from_options("g", options, client, Settings())
        assert route.thinking_level == level.lower()
        return
    with pytest.raises(ConfigError, match=r"routes\.g\.thinking_level") as caught:
        GeminiRoute.from_options("g", options, client, Settings())
    assert model in str(caught.value)


def test_a_refused_thinking_level_is_the_routes_set_up_not_the_prompt(
        gemini: GeminiServer) -> None:
    gemini.script([Error(400, "INVALID_ARGUMENT", "Thinking level is not supported for this "
                         "model.")])
    error = failure(gemini, thinking_level="high")
    assert error.fail_code == FailCode.UNKNOWN and not error.retryable and error.failover


# Availability ---------------------------------------------------------------------------------


def check(server: GeminiServer, **options: Any) -> RouteCheck:
    async def run() -> RouteCheck:
        opts = {"api_key": server.api_key, "model": MODEL, "base_url": server.base_url,
                **options}
        async with httpx.AsyncClient(trust_env=False) as client:
            return await GeminiRoute("gemini", client, **opts).check()

    return asyncio.run(run())


def test_check_finds_a_served_model_with_models_get() -> None:
    with gemini_server(models=["gemini-nano-banana-2.1"]) as server:
        result = check(server, model="gemini-nano-banana-2.1")
        assert server.lookups == ["gemini-nano-banana-2.1"]
    assert result.available is True
    assert "gemini-nano-banana-2.1 is served" in result.detail


def test_check_reports_a_shut_down_model_as_gone() -> None:
    with gemini_server(retired=["gemini-3.1-flash-image-preview"]) as server:
        result = check(server, model="gemini-3.1-flash-image-preview")
    assert result.available is False
    assert "does not serve model gemini-3.1-flash-image-preview" in result.detail
    assert "404 NOT_FOUND" in result.detail


def test_a_refused_key_is_no_verdict_on_the_model_and_never_shown(
        gemini: GeminiServer) -> None:
    result = check(gemini, api_key="AIza-not-the-right-key-42")
    assert result.available is None
    assert "API key not valid" in result.detail and "AIza-not-the-right" not in result.detail


def test_check_without_a_verdict_keeps_the_route() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def run() -> RouteCheck:
        async with httpx.AsyncClient(trust_env=False) as client:
            route = GeminiRoute("g", client, api_key="k", model=MODEL,
                                base_url=f"http://127.0.0.1:{port}")
            return await route.check()

    result = asyncio.run(run())
    assert result.available is None and "could not reach" in result.detail


def test_a_model_shut_down_at_run_time_raises_route_unavailable(gemini: GeminiServer) -> None:
    generate(gemini)
    gemini.retire(MODEL)
    error = failure(gemini)
    assert isinstance(error, RouteUnavailable)
    assert error.fail_code == FailCode.UNKNOWN and not error.retryable and error.failover
    assert f"no longer serves model {MODEL}" in error.message


def test_route_names_its_upstream_model(client: httpx.AsyncClient) -> None:
    route = GeminiRoute.from_options("g", {"model": "models/gemini-3-pro-image", "api_key": "k"},
                                     client, Settings())
    assert route.upstream_model == "gemini-3-pro-image"


def test_default_capabilities_of_the_served_models() -> None:
    v21 = default_capabilities("gemini-nano-banana-2.1")
    lite = default_capabilities("gemini-3.1-flash-lite-image")
    pro = default_capabilities("gemini-3-pro-image")
    assert v21.ratios == RATIOS and v21.resolutions == ("1k", "2k", "4k") and v21.search_grounding
    assert lite.ratios == TEN_RATIOS and lite.resolutions == ("1k",)
    assert not lite.search_grounding
    assert pro.ratios == TEN_RATIOS and pro.search_grounding and pro.max_references == 14

"""The relay route (routes/relay.py) against a fake APIXO on loopback (tests/fakes/apixo_server.py):
the submit body, polling, result copying, and how every upstream failure maps to ours.

The fake's result URLs are on loopback, so these routes allow private results unless a test says
otherwise. The address guard on result downloads is tested twice: against the fake (a loopback
result URL refused), and through ``httpx.MockTransport`` with a fake resolver, where names such as
``cdn.example.test`` stand for public hosts and the production address policy decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fakes.apixo_server import (
    ApixoServer,
    ExpiringUrl,
    Fail,
    Never,
    SubmitError,
    Succeed,
    apixo_server,
)
from fakes.web_server import fake_resolver
from PIL import Image

from imagegate.config import Settings
from imagegate.contract import output_size
from imagegate.errors import ConfigError, FailCode, RouteError
from imagegate.net.netguard import Resolver
from imagegate.routes.base import Capabilities, GeneratedImage, Job
from imagegate.routes.relay import RelayRoute, map_fail_code, parse_result_urls

RED = (200, 30, 30)
FAST: dict[str, Any] = {"poll_interval_s": 0.02, "first_poll_s": 0.0, "timeout_s": 5.0}


def make_job(**changes: Any) -> Job:
    width, height = output_size("1:1", "1k")
    job = Job(task_id="t1", model="nano-banana-2", mode="text-to-image",
              prompt="a lighthouse at dusk", aspect_ratio="1:1", resolution="1k",
              width=width, height=height, output_format="png")
    return dataclasses.replace(job, **changes)


def generate(server: ApixoServer, job: Job | None = None, **options: Any,
             ) -> Sequence[GeneratedImage]:
    async def go() -> Sequence[GeneratedImage]:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            kwargs: dict[str, Any] = {"base_url": server.base_url, "api_key": server.api_key,
                                      "allow_private_results": True, **FAST, **options}
            route = RelayRoute("apixo", client, **kwargs)
            try:
                return await route.generate(job or make_job())
            finally:
                await route.close()

    return asyncio.run(go())


def failure(server: ApixoServer, job: Job | None = None, **options: Any) -> RouteError:
    with pytest.raises(RouteError) as caught:
        generate(server, job, **options)
    return caught.value


# Success ------------------------------------------------------------------------------------


def test_text_to_image_sends_the_apixo_body_and_copies_the_image() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(color=RED)])
        images = generate(apixo)
    assert apixo.submits == [{"request_type": "async", "input": {
        "mode": "text-to-image", "prompt": "a lighthouse at dusk", "aspect_ratio": "1:1",
        "resolution": "1k", "output_format": "png", "google_search": False}}]
    assert apixo.headers[0]["authorization"] == f"Bearer {apixo.api_key}"
    assert len(images) == 1
    assert images[0].image.size == (1024, 1024)
    assert images[0].image.getpixel((10, 10)) == RED
    assert images[0].note == f"relay apixo: upstream task {apixo.task_ids[0]}"


def test_image_to_image_passes_the_client_urls_through() -> None:
    urls = ("https://example.com/a.png", "https://example.com/b.jpg")
    job = make_job(mode="image-to-image", image_urls=urls, aspect_ratio="4:5",
                   resolution="2k", output_format="jpeg", google_search=True)
    with apixo_server() as apixo:
        apixo.script([Succeed(color=RED)])
        images = generate(apixo, job)
    assert apixo.submits[0]["input"] == {
        "mode": "image-to-image", "prompt": "a lighthouse at dusk", "image_urls": list(urls),
        "aspect_ratio": "4:5", "resolution": "2k", "output_format": "jpeg",
        "google_search": True}
    assert images[0].image.size == output_size("4:5", "2k")
    pixel = images[0].image.getpixel((5, 5))
    assert isinstance(pixel, tuple)
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, RED, strict=True))  # JPEG is lossy


def test_polls_until_the_task_succeeds() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(polls=3)])
        images = generate(apixo)
    assert len(images) == 1
    assert apixo.polls == {apixo.task_ids[0]: 4}


def test_transient_status_errors_are_tolerated() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(flaky_polls=3, polls=1)])
        images = generate(apixo)
    assert len(images) == 1
    assert apixo.polls[apixo.task_ids[0]] == 5


def test_status_errors_that_persist_become_unknown_error() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(flaky_polls=50)])
        error = failure(apixo)
    assert error.fail_code == FailCode.UNKNOWN
    assert error.retryable and error.failover
    assert "HTTP 503" in error.message


def test_two_images_are_two_concurrent_upstream_tasks() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(polls=2, color=RED), Succeed(polls=2, color=(0, 0, 250))])
        images = generate(apixo, make_job(num_images=2))
    assert len(apixo.submits) == 2
    assert len(set(apixo.task_ids)) == 2
    colours = {image.image.getpixel((0, 0)) for image in images}
    assert colours == {RED, (0, 0, 250)}


def test_result_redirects_are_followed_up_to_three() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(redirects=3), Succeed(redirects=4)])
        assert len(generate(apixo)) == 1
        error = failure(apixo)
    assert error.fail_code == FailCode.UNKNOWN
    assert "redirected more than 3 times" in error.message


def test_a_result_bigger_than_the_cap_is_refused() -> None:
    with apixo_server() as apixo:
        error = failure(apixo, max_result_bytes=1000)
    assert error.fail_code == FailCode.UNKNOWN
    assert "larger than 1000 bytes" in error.message


# Failed tasks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("theirs", "ours"), [
    ("SensitiveContent", FailCode.SENSITIVE_CONTENT),
    ("CONTENT_VIOLATION", FailCode.SENSITIVE_CONTENT),
    ("SENSITIVE_CONTENT", FailCode.SENSITIVE_CONTENT),
    ("NSFW", FailCode.SENSITIVE_CONTENT),
    ("PromptInvalid", FailCode.PROMPT_INVALID),
    ("PROMPT_INVALID", FailCode.PROMPT_INVALID),
    ("INVALID_PROMPT", FailCode.PROMPT_INVALID),
    ("ImageFormatIncorrect", FailCode.IMAGE_FORMAT_INCORRECT),
    ("IMAGE_FORMAT_INCORRECT", FailCode.IMAGE_FORMAT_INCORRECT),
    ("INVALID_IMAGE", FailCode.IMAGE_FORMAT_INCORRECT),
    ("MissingParameter", FailCode.MISSING_PARAMETER),
    ("MISSING_PARAMETER", FailCode.MISSING_PARAMETER),
    ("RateLimited", FailCode.RATE_LIMITED),
    ("RATE_LIMITED", FailCode.RATE_LIMITED),
    ("Timeout", FailCode.TIMEOUT),
    ("TIMEOUT", FailCode.TIMEOUT),
    ("Unknown error", FailCode.UNKNOWN),
    ("UNKNOWN_ERROR", FailCode.UNKNOWN),
    ("INTERNAL_ERROR", FailCode.UNKNOWN),
    ("SomethingNew", FailCode.UNKNOWN),
])
def test_upstream_fail_codes_map_to_ours(theirs: str, ours: str) -> None:
    with apixo_server() as apixo:
        apixo.script([Fail(theirs, msg="they said no", polls=1)])
        error = failure(apixo)
    assert error.fail_code == ours
    assert error.message == "upstream: they said no"
    retry = ours in (FailCode.RATE_LIMITED, FailCode.TIMEOUT, FailCode.UNKNOWN)
    assert (error.retryable, error.failover) == (retry, retry)


@pytest.mark.parametrize("spelling", ["sensitive_content", "Sensitive-Content", " nsfw "])
def test_fail_codes_match_ignoring_case_and_separators(spelling: str) -> None:
    assert map_fail_code(spelling) == FailCode.SENSITIVE_CONTENT


def test_a_failed_task_without_a_message_names_its_code() -> None:
    with apixo_server() as apixo:
        apixo.script([Fail("CONTENT_VIOLATION", msg="")])
        error = failure(apixo)
    assert error.message == "upstream: task failed with failCode 'CONTENT_VIOLATION'"


# Refused submits ------------------------------------------------------------------------------


def test_submit_429_is_rate_limited_with_retry_after() -> None:
    with apixo_server() as apixo:
        apixo.script([SubmitError(429, retry_after=2)])
        error = failure(apixo)
    assert error.fail_code == FailCode.RATE_LIMITED
    assert error.retry_after == 2.0
    assert error.retryable and error.failover


def test_submit_500_is_unknown_error_with_failover() -> None:
    with apixo_server() as apixo:
        apixo.script([SubmitError(500)])
        error = failure(apixo)
    assert error.fail_code == FailCode.UNKNOWN
    assert error.retryable and error.failover
    assert "HTTP 500" in error.message


def test_submit_504_is_timeout() -> None:
    with apixo_server() as apixo:
        apixo.script([SubmitError(504)])
        assert failure(apixo).fail_code == FailCode.TIMEOUT


def test_a_wrong_key_fails_over_without_retry() -> None:
    with apixo_server() as apixo:
        error = failure(apixo, api_key="not-the-key")
    assert error.fail_code == FailCode.UNKNOWN
    assert (error.retryable, error.failover) == (False, True)
    assert "API key" in error.message
    assert apixo.submits == []


@pytest.mark.parametrize("status", [402, 403])
def test_balance_and_permission_refusals_fail_over_without_retry(status: int) -> None:
    with apixo_server() as apixo:
        apixo.script([SubmitError(status)])
        error = failure(apixo)
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.UNKNOWN, False, True)
    assert f"HTTP {status}" in error.message


def test_an_unknown_upstream_model_fails_over_without_retry() -> None:
    with apixo_server(models=["nano-banana-2"]) as apixo:
        error = failure(apixo, model="no-such-model")
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.UNKNOWN, False, True)
    assert "does not serve model no-such-model" in error.message


def test_a_refused_image_url_is_image_format_incorrect_and_fails_over() -> None:
    job = make_job(mode="image-to-image", image_urls=("data:image/png;base64,AAAA",))
    with apixo_server() as apixo:
        error = failure(apixo, job)
    assert error.fail_code == FailCode.IMAGE_FORMAT_INCORRECT
    assert (error.retryable, error.failover) == (False, True)
    assert "image_urls entries must be http(s) URLs" in error.message


@pytest.mark.parametrize(("field", "code"), [
    ("input.prompt", FailCode.PROMPT_INVALID),
    ("input.aspect_ratio", FailCode.MISSING_PARAMETER),
    (None, FailCode.MISSING_PARAMETER),
])
def test_other_400s_name_the_field_at_fault(field: str | None, code: str) -> None:
    with apixo_server() as apixo:
        apixo.script([SubmitError(400, message="nope", field=field)])
        error = failure(apixo)
    assert (error.fail_code, error.retryable, error.failover) == (code, False, True)


def test_an_unreachable_upstream_is_unknown_error() -> None:
    with apixo_server() as apixo:
        closed = apixo.base_url
    error = failure(ApixoServer(base_url=closed))
    assert error.fail_code == FailCode.UNKNOWN
    assert error.retryable and error.failover
    assert "could not connect" in error.message


def test_a_task_that_never_finishes_times_out() -> None:
    with apixo_server() as apixo:
        apixo.script([Never()])
        error = failure(apixo, timeout_s=0.3)
    assert error.fail_code == FailCode.TIMEOUT
    assert error.retryable and error.failover
    assert apixo.polls[apixo.task_ids[0]] >= 3


def test_an_expired_result_url_is_a_retryable_unknown_error() -> None:
    with apixo_server() as apixo:
        apixo.script([ExpiringUrl(status=404)])
        error = failure(apixo)
    assert error.fail_code == FailCode.UNKNOWN
    assert error.retryable and error.failover
    assert error.message == (f"relay apixo: result of upstream task {apixo.task_ids[0]}: "
                             "download answered HTTP 404 (expired or removed upstream)")


def test_the_key_is_never_sent_to_result_hosts() -> None:
    seen: list[httpx.Request] = []

    async def go() -> None:
        async def record(request: httpx.Request) -> None:
            seen.append(request)

        with apixo_server() as apixo:
            async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
                route = RelayRoute("apixo", client, base_url=apixo.base_url,
                                   api_key=apixo.api_key, allow_private_results=True, **FAST)
                await route.generate(make_job())

    asyncio.run(go())
    files = [r for r in seen if r.url.path.startswith("/files/")]
    assert files and all("authorization" not in r.headers for r in files)


def test_the_api_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with apixo_server(api_key="sk-secret-relay-key-42") as apixo:
        key = apixo.api_key
        apixo.script([SubmitError(401, message=f"key {key} is revoked"),
                      Fail("Unknown error", msg=f"auth {key} expired"),
                      SubmitError(500, message=f"Bearer {key}")])
        errors = [failure(apixo) for _ in range(3)]
        errors.append(failure(apixo, api_key=key + "-wrong"))
    for error in errors:
        assert "sk-secret" not in str(error)
        assert "sk-secret" not in repr(error)
    assert "[redacted]" in errors[0].message
    assert "sk-secret" not in caplog.text


def test_an_error_code_inside_an_http_200_envelope_is_honoured() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 402, "message": "Insufficient balance",
                                         "data": None})

    async def go() -> RouteError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            route = RelayRoute("apixo", client, base_url="https://api.apixo.test", api_key="k",
                               **FAST)
            with pytest.raises(RouteError) as caught:
                await route.generate(make_job())
            return caught.value

    error = asyncio.run(go())
    assert (error.fail_code, error.retryable, error.failover) == (FailCode.UNKNOWN, False, True)
    assert "balance" in error.message


# The address guard on result downloads -------------------------------------------------------

REFUSED = "the upstream's result URL points at a non-public address; not downloaded"


def test_a_loopback_result_url_is_refused_without_naming_it() -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(), Succeed(redirects=2)])
        errors = [failure(apixo, allow_private_results=False) for _ in range(2)]
        port = str(httpx.URL(apixo.base_url).port)
    assert apixo.downloads == []  # refused before connecting
    for error, task_id in zip(errors, apixo.task_ids, strict=True):
        assert (error.fail_code, error.retryable, error.failover) == (
            FailCode.UNKNOWN, False, True)
        assert error.message == f"relay apixo: result of upstream task {task_id}: {REFUSED}"
        shown = error.message.replace(task_id, "")  # a random hex id might contain the digits
        assert "127.0.0.1" not in shown
        assert port not in shown


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(out, format="PNG")
    return out.getvalue()


def via_mock(result_url: str, files: dict[str, httpx.Response], resolver: Resolver,
             **options: Any) -> tuple[list[GeneratedImage] | RouteError, list[httpx.Request]]:
    """Run one task against an upstream at ``https://api.apixo.test`` whose result URL is
    ``result_url``; ``files`` answers result requests by the URL actually requested (the pinned
    one). The outcome, and every result request made."""
    downloads: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.apixo.test":
            if request.method == "POST":
                return httpx.Response(200, json={"code": 200, "data": {"taskId": "up-1"}})
            return httpx.Response(200, json={"code": 200, "data": {
                "taskId": "up-1", "state": "success",
                "resultJson": f'{{"resultUrls": ["{result_url}"]}}'}})
        downloads.append(request)
        return files.get(str(request.url), httpx.Response(599))

    async def go() -> list[GeneratedImage] | RouteError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            route = RelayRoute("apixo", client, base_url="https://api.apixo.test", api_key="k",
                               resolver=resolver, **FAST, **options)
            try:
                return await route.generate(make_job())
            except RouteError as exc:
                return exc

    outcome = asyncio.run(go())
    return outcome, downloads


def test_every_result_hop_connects_to_the_checked_address() -> None:
    resolver = fake_resolver({"cdn.example.test": ["93.184.216.34"],
                              "img.example.test": ["2606:4700::1111"]})
    files = {
        "https://93.184.216.34/r.png": httpx.Response(
            302, headers={"Location": "https://img.example.test:8443/final.png"}),
        "https://[2606:4700::1111]:8443/final.png": httpx.Response(200, content=_png()),
    }
    outcome, downloads = via_mock("https://cdn.example.test/r.png", files, resolver)
    assert isinstance(outcome, list)
    assert outcome[0].image.getpixel((1, 1)) == RED
    first, second = downloads
    assert first.headers["Host"] == "cdn.example.test"
    assert first.extensions["sni_hostname"] == "cdn.example.test"
    assert second.headers["Host"] == "img.example.test:8443"
    assert second.extensions["sni_hostname"] == "img.example.test"
    assert all("authorization" not in r.headers for r in downloads)


@pytest.mark.parametrize(("location", "private"), [
    ("http://169.254.169.254/latest/meta-data/", ["169.254.169.254"]),
    ("http://10.0.0.7:6379/", ["10.0.0.7", "6379"]),
    ("http://[::ffff:127.0.0.1]:2222/x", ["127.0.0.1", "2222"]),
    ("https://internal.example.test:8080/x.png", ["192.168.0.10", "8080"]),
])
def test_a_redirect_into_private_space_is_refused(location: str, private: list[str]) -> None:
    resolver = fake_resolver({"cdn.example.test": ["93.184.216.34"],
                              "internal.example.test": ["192.168.0.10"]})
    files = {"https://93.184.216.34/r.png": httpx.Response(302, headers={"Location": location})}
    outcome, downloads = via_mock("https://cdn.example.test/r.png", files, resolver)
    assert isinstance(outcome, RouteError)
    assert (outcome.fail_code, outcome.retryable, outcome.failover) == (
        FailCode.UNKNOWN, False, True)
    assert outcome.message == f"relay apixo: result of upstream task up-1: {REFUSED}"
    assert all(text not in outcome.message for text in private)
    assert [str(r.url) for r in downloads] == ["https://93.184.216.34/r.png"]


def test_the_service_log_names_what_the_failmsg_does_not(caplog: pytest.LogCaptureFixture,
                                                         ) -> None:
    resolver = fake_resolver({"cdn.example.test": ["93.184.216.34"],
                              "internal.example.test": ["192.168.0.10"]})
    files = {"https://93.184.216.34/r.png": httpx.Response(
        302, headers={"Location": "https://internal.example.test/x.png"})}
    with caplog.at_level(logging.WARNING, logger="imagegate.routes.relay"):
        outcome, _ = via_mock("https://cdn.example.test/r.png", files, resolver)
    assert isinstance(outcome, RouteError) and "192.168.0.10" not in outcome.message
    assert "address 192.168.0.10 of host internal.example.test is not public" in caplog.text


def test_a_result_host_that_does_not_resolve_is_a_retryable_unknown_error() -> None:
    outcome, downloads = via_mock("https://gone.example.test/r.png", {}, fake_resolver({}))
    assert isinstance(outcome, RouteError)
    assert (outcome.fail_code, outcome.retryable, outcome.failover) == (
        FailCode.UNKNOWN, True, True)
    assert "could not resolve the result host" in outcome.message
    assert downloads == []


def test_private_results_allowed_are_fetched_as_written() -> None:
    files = {"http://10.0.0.7:8000/r.png": httpx.Response(200, content=_png())}
    outcome, downloads = via_mock("http://10.0.0.7:8000/r.png", files, fake_resolver({}),
                                  allow_private_results=True)
    assert isinstance(outcome, list)
    assert [str(r.url) for r in downloads] == ["http://10.0.0.7:8000/r.png"]


@pytest.mark.parametrize(("data", "urls"), [
    ({"resultJson": '{"resultUrls": ["https://r/1.png"]}'}, ["https://r/1.png"]),
    ({"resultJson": {"resultUrls": ["https://r/1.png"]}}, ["https://r/1.png"]),
    ({"resultUrls": ["https://r/2.png"]}, ["https://r/2.png"]),
    ({"resultJson": "not json", "resultUrls": ["https://r/3.png"]}, ["https://r/3.png"]),
    ({"resultJson": '{"resultUrls": []}'}, []),
    ({}, []),
])
def test_result_urls_are_read_from_every_shape(data: dict[str, Any], urls: list[str]) -> None:
    assert parse_result_urls(data) == urls


# Configuration --------------------------------------------------------------------------------


def from_options(options: dict[str, Any], settings: Settings | None = None) -> RelayRoute:
    async def go() -> RelayRoute:
        async with httpx.AsyncClient() as client:
            return RelayRoute.from_options("upstream", options, client, settings or Settings())

    return asyncio.run(go())


def test_options_configure_the_route() -> None:
    route = from_options({
        "base_url": "https://api.apixo.ai/api/v1/", "api_key": "k", "model": "nano-banana-pro",
        "poll_interval_seconds": 10, "first_poll_seconds": 15, "timeout_seconds": 300,
        "official": True, "search_grounding": True, "max_references": 4,
        "resolutions": ["2k", "1k"], "ratios": ["16:9", "1:1"], "cost": {"1k": "0.04", "2k": 0.07},
    })
    assert route.base_url == "https://api.apixo.ai"
    assert (route.model, route.poll_interval_s, route.first_poll_s, route.timeout_s) == (
        "nano-banana-pro", 10.0, 15.0, 300.0)
    assert route.capabilities == Capabilities(
        max_references=4, resolutions=("1k", "2k"), ratios=("1:1", "16:9"),
        search_grounding=True, official=True, cost_micros={"1k": 40_000, "2k": 70_000})


def test_option_defaults() -> None:
    route = from_options({"base_url": "https://api.apixo.ai", "api_key": "k"})
    assert (route.model, route.poll_interval_s, route.first_poll_s) == ("nano-banana-2", 3.0, 3.0)
    assert route.capabilities == Capabilities()
    assert route.allow_private_results is False


@pytest.mark.parametrize(("private_results", "allow_private_networks", "allowed"), [
    (None, False, False), (False, False, False), (True, False, True), (None, True, True),
    (False, True, True),
])
def test_private_results_come_from_the_option_or_the_server_setting(
        private_results: bool | None, allow_private_networks: bool, allowed: bool) -> None:
    options: dict[str, Any] = {"base_url": "http://10.1.2.3:8000", "api_key": "k"}
    if private_results is not None:
        options["private_results"] = private_results
    settings = Settings(allow_private_networks=allow_private_networks)
    assert from_options(options, settings).allow_private_results is allowed


@pytest.mark.parametrize(("options", "named"), [
    ({"api_key": "k"}, "routes.upstream.base_url"),
    ({"base_url": "https://a.test"}, "routes.upstream.api_key"),
    ({"base_url": "ftp://a.test", "api_key": "k"}, "routes.upstream.base_url"),
    ({"base_url": "https://a.test", "api_key": "k", "colour": "red"}, "routes.upstream.colour"),
    ({"base_url": "https://a.test", "api_key": "k", "poll_interval_seconds": 0},
     "routes.upstream.poll_interval_seconds"),
    ({"base_url": "https://a.test", "api_key": "k", "timeout_seconds": "10"},
     "routes.upstream.timeout_seconds"),
    ({"base_url": "https://a.test", "api_key": "k", "official": "yes"},
     "routes.upstream.official"),
    ({"base_url": "https://a.test", "api_key": "k", "max_references": 15},
     "routes.upstream.max_references"),
    ({"base_url": "https://a.test", "api_key": "k", "resolutions": ["8k"]},
     "routes.upstream.resolutions"),
    ({"base_url": "https://a.test", "api_key": "k", "ratios": ["auto"]},
     "routes.upstream.ratios"),
    ({"base_url": "https://a.test", "api_key": "k", "cost": {"1k": "five cents"}},
     "routes.upstream.cost.1k"),
    ({"base_url": "https://a.test", "api_key": "k", "cost": {"8k": "0.1"}},
     "routes.upstream.cost.8k"),
    ({"base_url": "https://a.test", "api_key": "k", "private_results": "yes"},
     "routes.upstream.private_results"),
])
def test_bad_options_name_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_options(options)
    assert named in str(caught.value)

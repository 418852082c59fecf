"""The sandbox route (routes/sandbox.py, docs/contract.md §9): directives, sizes, failures."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from imagegate.contract import output_size
from imagegate.errors import FailCode, RouteError
from imagegate.routes.base import GeneratedImage, Job
from imagegate.routes.sandbox import Directives, SandboxRoute, parse_directives


def make_job(**changes: Any) -> Job:
    width, height = output_size("16:9", "1k")
    job = Job(task_id="t1", model="nano-banana-2", mode="text-to-image",
              prompt="a lighthouse at dusk", aspect_ratio="16:9", resolution="1k",
              width=width, height=height, output_format="png")
    return dataclasses.replace(job, **changes)


def generate(job: Job, route: SandboxRoute | None = None) -> Sequence[GeneratedImage]:
    return asyncio.run((route or SandboxRoute(delay_s=0)).generate(job))


def failure(job: Job) -> RouteError:
    with pytest.raises(RouteError) as caught:
        generate(job)
    return caught.value


# parse_directives -----------------------------------------------------------------------------


def test_prompt_without_directives_is_unchanged() -> None:
    assert parse_directives("a fox [in brackets]") == Directives("a fox [in brackets]")


@pytest.mark.parametrize(("text", "code"), [
    ("SensitiveContent", "SensitiveContent"),
    ("sensitivecontent", "SensitiveContent"),
    ("TIMEOUT", "Timeout"),
    ("ratelimited", "RateLimited"),
    ("promptinvalid", "PromptInvalid"),
    ("imageformatincorrect", "ImageFormatIncorrect"),
    ("MissingParameter", "MissingParameter"),
    ("unknown error", "Unknown error"),
])
def test_fail_code_is_matched_case_insensitively(text: str, code: str) -> None:
    directives = parse_directives(f"a fox [sandbox:fail={text}]")
    assert directives.fail_code == code
    assert directives.fail_attempts is None
    assert directives.prompt == "a fox"


def test_directive_name_is_case_insensitive() -> None:
    assert parse_directives("[SANDBOX:FAIL=timeout] x").fail_code == "Timeout"


def test_fail_with_a_count_fails_only_that_many_attempts() -> None:
    directives = parse_directives("a fox [sandbox:fail=RateLimited:2]")
    assert (directives.fail_code, directives.fail_attempts) == ("RateLimited", 2)


def test_delay_directive_is_read_in_seconds() -> None:
    assert parse_directives("a fox [sandbox:delay=2.5]").delay_s == 2.5
    assert parse_directives("a fox [sandbox:delay=0]").delay_s == 0.0


def test_several_directives_combine_and_are_removed_from_the_prompt() -> None:
    directives = parse_directives("[sandbox:delay=0] a fox [sandbox:fail=Timeout:1] at night")
    assert directives.fail_code == "Timeout"
    assert directives.fail_attempts == 1
    assert directives.delay_s == 0.0
    assert "sandbox" not in directives.prompt
    assert directives.prompt.startswith("a fox")
    assert directives.prompt.endswith("at night")


@pytest.mark.parametrize("prompt", [
    "[sandbox:explode=1]",
    "x [sandbox:fail=NotACode]",
    "x [sandbox:fail=CONTENT_VIOLATION]",
    "x [sandbox:fail=]",
    "x [sandbox:fail=Timeout:x]",
    "x [sandbox:fail=Timeout:-1]",
    "x [sandbox:delay=abc]",
    "x [sandbox:delay=-1]",
    "x [sandbox:delay=601]",
    "x [sandbox:delay=nan]",
    "x [sandbox:delay=inf]",
])
def test_bad_directive_is_refused_as_prompt_invalid(prompt: str) -> None:
    with pytest.raises(RouteError) as caught:
        parse_directives(prompt)
    assert caught.value.fail_code == FailCode.PROMPT_INVALID
    assert caught.value.retryable is False
    assert caught.value.failover is False


# SandboxRoute.generate ------------------------------------------------------------------------


def test_route_stands_in_for_every_request_search_grounding_included() -> None:
    route = SandboxRoute(delay_s=0)
    assert route.name == "sandbox"
    assert route.capabilities.search_grounding is True
    assert route.capabilities.official is False
    assert route.capabilities.max_references >= 14


@pytest.mark.parametrize("num_images", [1, 3])
def test_generate_returns_num_images_at_the_jobs_exact_size(num_images: int) -> None:
    images = generate(make_job(num_images=num_images))
    assert len(images) == num_images
    assert all(g.image.size == (1376, 768) for g in images)


@pytest.mark.parametrize(("ratio", "resolution"), [("1:8", "1k"), ("21:9", "1k"),
                                                   ("9:16", "1k")])
def test_generate_honours_other_sizes(ratio: str, resolution: str) -> None:
    width, height = output_size(ratio, resolution)
    (image,) = generate(make_job(aspect_ratio=ratio, resolution=resolution, width=width,
                                 height=height))
    assert image.image.size == (width, height)


def test_same_job_gives_the_same_pixels() -> None:
    job = make_job(seed=7, num_images=2)
    first = [g.image.tobytes() for g in generate(job)]
    second = [g.image.tobytes() for g in generate(job)]
    assert first == second


def test_images_of_one_task_differ_from_each_other() -> None:
    a, b = generate(make_job(num_images=2))
    assert a.image.tobytes() != b.image.tobytes()


def test_directives_are_not_part_of_the_picture() -> None:
    plain = generate(make_job(prompt="a lighthouse at dusk"))[0].image.tobytes()
    steered = generate(make_job(prompt="a lighthouse at dusk [sandbox:delay=0]"))
    assert steered[0].image.tobytes() == plain


@pytest.mark.parametrize("code", ["SensitiveContent", "PromptInvalid", "ImageFormatIncorrect",
                                  "MissingParameter"])
def test_fail_directive_fails_with_the_code_asked_and_no_retry(code: str) -> None:
    error = failure(make_job(prompt=f"a fox [sandbox:fail={code}]"))
    assert error.fail_code == code
    assert error.retryable is False
    assert error.failover is False


@pytest.mark.parametrize("code", ["RateLimited", "Timeout", "Unknown error"])
def test_retryable_fail_codes_ask_for_a_retry_of_the_same_task_only(code: str) -> None:
    error = failure(make_job(prompt=f"a fox [sandbox:fail={code}]", attempt=3))
    assert error.fail_code == code
    assert error.retryable is True
    assert error.failover is False and error.injected is True and error.retry_after is None


def test_fail_without_a_count_fails_every_attempt() -> None:
    for attempt in (1, 2, 5):
        error = failure(make_job(prompt="x [sandbox:fail=Timeout]", attempt=attempt))
        assert error.fail_code == "Timeout"


def test_fail_with_count_one_fails_attempt_one_and_succeeds_attempt_two() -> None:
    prompt = "a fox [sandbox:fail=RateLimited:1]"
    assert failure(make_job(prompt=prompt, attempt=1)).fail_code == "RateLimited"
    images = generate(make_job(prompt=prompt, attempt=2))
    assert len(images) == 1
    assert images[0].image.size == (1376, 768)


def test_bad_directive_fails_the_task_as_prompt_invalid() -> None:
    assert failure(make_job(prompt="x [sandbox:fail=Nope]")).fail_code == "PromptInvalid"

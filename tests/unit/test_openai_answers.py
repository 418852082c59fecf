"""How the openai-images route reads a server's refusals: what each means for the task."""

from __future__ import annotations

import httpx
import pytest

from imagegate.routes.openai_answers import Kind, Problem, classify, read_problem, retry_after


@pytest.mark.parametrize(("problem", "kind"), [
    (Problem(400, "rejected by our safety system"), Kind.SAFETY),
    (Problem(400, "x", code="moderation_blocked"), Kind.SAFETY),
    (Problem(400, "bad", param="image[]"), Kind.IMAGE),
    (Problem(400, "bad", param="mask"), Kind.IMAGE),
    (Problem(400, "Invalid input image"), Kind.IMAGE),
    (Problem(400, "too long", param="prompt"), Kind.PROMPT),
    (Problem(400, "something odd"), Kind.PROMPT),
    (Problem(400, "bad", param="guidance_scale"), Kind.SET_UP),
    (Problem(400, "bad", code="model_not_found"), Kind.MODEL_GONE),
    (Problem(404, "The model `m` does not exist"), Kind.MODEL_GONE),
    (Problem(404, "Not Found"), Kind.SET_UP),
    (Problem(401), Kind.SET_UP),
    (Problem(429), Kind.RATE_LIMITED),
    (Problem(429, code="insufficient_quota"), Kind.SET_UP),
    (Problem(408), Kind.TIMEOUT),
    (Problem(504), Kind.TIMEOUT),
    (Problem(500), Kind.TRANSIENT),
    (Problem(503), Kind.TRANSIENT),
])
def test_classify(problem: Problem, kind: Kind) -> None:
    assert classify(problem) is kind


@pytest.mark.parametrize(("body", "problem"), [
    ({"error": {"message": "Bad size", "type": "invalid_request_error", "param": "size",
                "code": "invalid_value"}},
     Problem(400, "Bad size", "invalid_value", "size", "invalid_request_error")),
    ({"object": "error", "message": "model mismatch", "type": "BadRequestError", "code": 400},
     Problem(400, "model mismatch", "400", "", "badrequesterror")),
    ({"detail": "Invalid size format: '1024x'."}, Problem(400, "Invalid size format: '1024x'.")),
    ({"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]},
     Problem(400, "prompt: field required", param="prompt")),
])
def test_read_problem_reads_every_error_shape(body: object, problem: Problem) -> None:
    assert read_problem(httpx.Response(400, json=body)) == problem


def test_read_problem_keeps_a_short_text_of_a_body_that_is_not_json() -> None:
    problem = read_problem(httpx.Response(502, text="<html>Bad Gateway</html>" + "x" * 500))
    assert problem.status == 502 and problem.message.startswith("<html>Bad Gateway")
    assert len(problem.message) <= 200


def test_retry_after_prefers_milliseconds_then_seconds() -> None:
    assert retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after(httpx.Headers({"retry-after": "9"})) == 9.0
    assert retry_after(httpx.Headers({})) is None

"""Hostile bodies sent to the OpenAI Images and Gemini facades: every one is refused with a 4xx
in the facade's own error shape (or, valid after all, stored and answered), never a 500.

Each field of a valid request is replaced in turn by values of every JSON type and a few
malformed ones; then whole bodies that are not what either format sends. The wait is cut to
nothing: a body that is valid answers the facade's "wait ran out" error at once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import Harness, scenario

from imagegate.task_list import TaskQuery

HOSTILE: list[Any] = [None, True, 0, -1, 2**63, 1.5, "", " ", "x" * 70_000, [], [None], {},
                      {"a": 1}, [[[[]]]], "\ud800", "nan"]
OPENAI_BODY = {"model": "nano-banana-2", "prompt": "a fox", "size": "1024x1024", "n": 1,
               "quality": "high", "response_format": "b64_json", "output_format": "png",
               "background": "auto"}
OPENAI_EDIT = {"model": "nano-banana-2", "prompt": "a fox",
               "images": [{"image_url": "https://example.com/a.png"}]}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "a fox"}]}],
               "generationConfig": {"responseModalities": ["IMAGE"], "candidateCount": 1,
                                    "seed": 1,
                                    "imageConfig": {"aspectRatio": "1:1", "imageSize": "1K"}},
               "tools": [{"googleSearch": {}}]}
GEMINI_PATH = "/v1beta/models/nano-banana-2:generateContent"
RAW_BODIES = [b"", b"{", b"null", b"[]", b'"text"', b"1", b"[" * 10_000 + b"]" * 10_000,
              b'{"prompt": NaN}', b"\xff\xfe", b'{"prompt": "\\ud800"}']


def mutations(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(path, body) for every field of ``body`` (nested objects too) set to each hostile
    value, and for each field removed."""
    found = []
    for name, value in body.items():
        path = (*prefix, name)
        for hostile in [*HOSTILE, ...]:
            found.append((".".join(path), replaced(body, name, hostile)))
        if isinstance(value, dict):
            found += [(p, replaced(body, name, inner)) for p, inner in mutations(value, path)]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            found += [(p, replaced(body, name, [inner]))
                      for p, inner in mutations(value[0], (*path, "0"))]
    return found


def replaced(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    copy = dict(body)
    if value is ...:
        del copy[name]
    else:
        copy[name] = value
    return copy


def check_openai(r: Any, what: str) -> None:
    assert r.status_code < 500 or r.status_code in (503, 504), (what, r.status_code, r.text)
    error = r.json().get("error")
    if r.status_code >= 400:
        assert isinstance(error, dict) and error["message"] and "type" in error, (what, r.text)


def check_gemini(r: Any, what: str) -> None:
    assert r.status_code < 500 or r.status_code in (503, 504), (what, r.status_code, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["code"] == r.status_code and error["message"] and error["status"], what


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(("path", "template"), [("/v1/images/generations", OPENAI_BODY),
                                                ("/v1/images/edits", OPENAI_EDIT)])
def test_no_openai_field_value_makes_a_500(path: str, template: dict[str, Any]) -> None:
    @scenario(facades_wait_seconds=0.001)
    async def _(h: Harness) -> None:
        new = await h.new_key(credit="1000")
        async with h.http(new.plain) as c:
            for where, body in mutations(template):
                r = await c.post(path, content=dumps(body),
                                 headers={"content-type": "application/json"})
                check_openai(r, f"{path} {where}")


def test_no_gemini_field_value_makes_a_500() -> None:
    @scenario(facades_wait_seconds=0.001)
    async def _(h: Harness) -> None:
        new = await h.new_key(credit="1000")
        async with h.http() as c:
            for where, body in mutations(GEMINI_BODY):
                r = await c.post(GEMINI_PATH, content=dumps(body),
                                 headers={"content-type": "application/json",
                                          "x-goog-api-key": new.plain})
                check_gemini(r, where)


@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_malformed_bodies_are_refused_in_each_format(raw: bytes) -> None:
    @scenario(facades_wait_seconds=0.001)
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            for path in ("/v1/images/generations", "/v1/images/edits"):
                r = await c.post(path, content=raw, headers={"content-type": "application/json"})
                check_openai(r, path)
                assert r.status_code in (400, 413), r.text
            r = await c.post(GEMINI_PATH, content=raw,
                             headers={"content-type": "application/json"})
            check_gemini(r, GEMINI_PATH)
            assert r.status_code == 400, r.text
        assert (await h.store.list_tasks(TaskQuery(key_id=new.key.id, limit=1))) == []

"""Decoding request bodies (api/endpoints.py): what is not JSON the service can read is a 400 in
plain words, never an exception of the decoder's."""

from __future__ import annotations

import pytest

from imagegate.api.endpoints import MAX_JSON_DEPTH, json_object, parse_json
from imagegate.contract import ModelLimits, parse_submit
from imagegate.errors import InvalidRequest


def nested(levels: int) -> bytes:
    """An object holding arrays: ``levels`` levels of nesting in all."""
    inner = levels - 1
    return b'{"x": ' + b"[" * inner + b"]" * inner + b"}"


def refusal(raw: bytes) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw)
    assert caught.value.field is None
    return caught.value.error


def test_nesting_up_to_the_limit_is_read() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH))["x"] is not None


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_nesting_past_the_limit_is_refused_whatever_the_recursion_limit(levels: int) -> None:
    assert refusal(nested(levels)) == (
        f"request body is nested too deeply (more than {MAX_JSON_DEPTH} levels)")


def test_many_shallow_objects_are_not_too_deep() -> None:
    assert len(parse_json(b"[" + b'{"a": [1]},' * 1000 + b"1]")) == 1001


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b"\xfe\xff\x00", b'{"a": "\xc3"}'])
def test_body_that_is_not_utf8_is_refused_in_plain_words(raw: bytes) -> None:
    assert refusal(raw) == "request body is not valid UTF-8 JSON"


@pytest.mark.parametrize("raw,where", [(b"{not json", "line 1, column 2"),
                                       (b'{"a": 1,\n}', "line 2, column 1"),
                                       (b"", "line 1, column 1")])
def test_malformed_json_is_refused_saying_where(raw: bytes, where: str) -> None:
    error = refusal(raw)
    assert error.startswith("request body is not valid JSON: ") and error.endswith(where)


def test_integer_too_long_to_convert_is_refused_by_the_field_that_holds_it() -> None:
    body = parse_json(b'{"input": {"mode": "text-to-image", "prompt": "x", "aspect_ratio": '
                      b'"1:1", "resolution": "1k", "seed": ' + b"7" * 5000 + b"}}")
    with pytest.raises(InvalidRequest) as caught:
        parse_submit(body, ModelLimits())
    assert caught.value.field == "input.seed"
    assert "digits" not in caught.value.error and "sys." not in caught.value.error


def test_long_integer_in_an_unknown_field_is_ignored_like_the_field() -> None:
    assert set(parse_json(b'{"extra": -' + b"1" * 5000 + b"}")) == {"extra"}


@pytest.mark.parametrize("raw", [b"[]", b"null", b"1", b'"x"', b"true"])
def test_json_object_refuses_anything_else(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        json_object(parse_json(raw))
    assert caught.value.error == "the request body must be a JSON object"

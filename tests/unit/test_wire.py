"""The wire models, the document generated from them and the submit validator say the same:
every constraint of the submit schema, broken, is a 400 naming that field; every enumeration of
the schema is exactly what the validator takes; every example of the document is taken by the
server (a request) or decodes as the wire model it illustrates (an answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from imagegate_client import wire_models as wire

from imagegate.api.openapi import openapi_document
from imagegate.app.tasks import StatusAnswer
from imagegate.contract import ModelLimits, parse_submit
from imagegate.errors import FailCode, InvalidRequest
from imagegate.tasks import envelope

DOC = openapi_document("https://imagegate.example")
SCHEMAS = DOC["components"]["schemas"]
TEXT = {"mode": "text-to-image", "prompt": "a cat", "aspect_ratio": "1:1", "resolution": "1k"}
I2I = {**TEXT, "mode": "image-to-image", "image_urls": ["https://example.com/a.png"]}
URL = "https://example.com/a.png"
WRONG_TYPE = {"string": 5, "integer": "1", "boolean": "yes", "array": "x", "number": "1"}

Json = dict[str, Any]


def refused_field(body: Any) -> str | None:
    with pytest.raises(InvalidRequest) as refused:
        parse_submit(body, ModelLimits())
    return refused.value.field


def types(schema: Json) -> list[str]:
    t = schema.get("type", [])
    return [x for x in (t if isinstance(t, list) else [t]) if x != "null"]


def violations(schema: Json) -> Iterator[tuple[str, Any]]:
    """A value breaking each constraint of a property's schema, named by the keyword."""
    for t in types(schema):
        yield f"type {t}", WRONG_TYPE[t]
    if "enum" in schema:
        yield "enum", "not-one-of-them"
    if "minLength" in schema:
        yield "minLength", "x" * (schema["minLength"] - 1)
    if "maxLength" in schema:
        yield "maxLength", "x" * (schema["maxLength"] + 1)
    if schema.get("pattern") == "\\S":
        yield "pattern", " \t "
    if "minimum" in schema:
        yield "minimum", schema["minimum"] - 1
    if "maximum" in schema:
        yield "maximum", schema["maximum"] + 1
    if "maxItems" in schema:
        yield "maxItems", [URL] * (schema["maxItems"] + 1)


def body_with(where: str, name: str, value: Any) -> Json:
    """A valid body but for ``value`` in the field ``name`` (of ``input`` or the top level);
    image-to-image for image_urls, and for the image-to-image mode."""
    if where == "input":
        i2i = name == "image_urls" or value == "image-to-image"
        return {"input": {**(I2I if i2i else TEXT), name: value}}
    return {"input": TEXT, name: value}


CASES = [(where, name, keyword, value)
         for where, component in (("input", "SubmitInput"), ("top", "SubmitRequest"))
         for name, prop in SCHEMAS[component]["properties"].items() if name != "input"
         for keyword, value in violations(prop)]


@pytest.mark.parametrize(("where", "name", "keyword", "value"), CASES,
                         ids=[f"{c[1]}-{c[2]}" for c in CASES])
def test_every_submit_constraint_broken_is_refused_naming_the_field(
        where: str, name: str, keyword: str, value: Any) -> None:
    field = f"input.{name}" if where == "input" else name
    assert refused_field(body_with(where, name, value)) == field


def test_the_constraints_cover_every_field_that_has_one() -> None:
    broken = {name for _, name, _, _ in CASES}
    assert broken >= {"mode", "prompt", "aspect_ratio", "resolution", "image_urls",
                      "output_format", "google_search", "seed", "num_images", "request_type",
                      "provider", "source"}


def test_every_reference_image_constraint_broken_is_refused_naming_the_entry() -> None:
    items = SCHEMAS["SubmitInput"]["properties"]["image_urls"]["items"]
    url, data_uri = items["anyOf"]
    assert url["pattern"] == "^[Hh][Tt][Tt][Pp][Ss]?://" and url["format"] == "iri"
    for value in (5, "", "ftp://example.com/a.png", "https://" + "x" * url["maxLength"],
                  "data:text/plain;base64,AAAA", "data:image/png,AAAA"):
        body = {"input": {**I2I, "image_urls": [URL, value]}}
        assert refused_field(body) == "input.image_urls[1]"
    for value in ("HTTPS://example.com/a.png", "data:image/webp;base64,AAAA"):
        parse_submit({"input": {**I2I, "image_urls": [value]}}, ModelLimits())
    assert data_uri["pattern"] == "^data:image/[^;,]+;base64,"


def test_the_callback_url_rule_between_fields_is_the_validators() -> None:
    then = SCHEMAS["SubmitRequest"]["then"]
    assert then["required"] == ["callback_url"]
    url = then["properties"]["callback_url"]
    for value in (None, "", "ftp://example.com/h", "x" * (url["maxLength"] + 1), 5):
        body = {"input": TEXT, "request_type": "callback", "callback_url": value}
        assert refused_field(body) == "callback_url"


def test_the_image_urls_rule_between_fields_is_the_validators() -> None:
    inp = SCHEMAS["SubmitInput"]
    assert inp["then"]["properties"]["image_urls"]["minItems"] == 1
    assert inp["else"]["properties"]["image_urls"]["maxItems"] == 0
    assert refused_field({"input": {**I2I, "image_urls": []}}) == "input.image_urls"
    assert refused_field({"input": {**TEXT, "image_urls": [URL]}}) == "input.image_urls"


def enums() -> Iterator[tuple[str, str, list[Any]]]:
    for where, component in (("input", "SubmitInput"), ("top", "SubmitRequest")):
        for name, prop in SCHEMAS[component]["properties"].items():
            if "enum" in prop:
                yield where, name, prop["enum"]


@pytest.mark.parametrize(("where", "name", "values"), list(enums()),
                         ids=[e[1] for e in enums()])
def test_every_enum_of_the_schema_is_what_the_validator_takes(
        where: str, name: str, values: list[Any]) -> None:
    for value in values:  # null among them means absent, which each of these may be
        body = body_with(where, name, value)
        if name == "request_type" and value == "callback":
            body["callback_url"] = "https://example.com/hook"
        parse_submit(body, ModelLimits())
    # And nothing else, in any spelling the validator could take; case folds where documented.
    folds = "Case-insensitive" in SCHEMAS["SubmitInput"]["properties"].get(name, {}).get(
        "description", "")
    for value in values:
        if isinstance(value, str) and value.upper() != value:
            upper = body_with(where, name, value.upper())
            if folds:
                parse_submit(upper, ModelLimits())
            else:
                assert refused_field(upper) == (f"input.{name}" if where == "input" else name)


def test_the_validator_takes_no_value_the_schema_does_not_list() -> None:
    props = SCHEMAS["SubmitInput"]["properties"]
    listed = {name: set(props[name]["enum"]) for name in ("mode", "aspect_ratio", "resolution")}
    for name, values in listed.items():
        for candidate in ("auto", "1:1", "2:1", "1k", "8k", "text-to-image", "video", "png"):
            body = body_with("input", name, candidate)
            if candidate in values:
                parse_submit(body, ModelLimits())
            else:
                assert refused_field(body) == f"input.{name}"


def test_the_fail_codes_of_the_wire_are_the_services() -> None:
    assert wire.FAIL_CODES == (*FailCode.ALL, FailCode.CANCELED)


def examples(path: str, method: str) -> Iterator[tuple[str, Json]]:
    op = DOC["paths"][path][method]
    for code, response in op["responses"].items():
        for name, example in response.get("content", {}).get("application/json", {}).get(
                "examples", {}).items():
            yield f"{code}:{name}", example["value"]


def test_every_submit_example_is_taken_by_the_server() -> None:
    body = DOC["paths"]["/api/v1/generateTask/{model}"]["post"]["requestBody"]
    for example in body["content"]["application/json"]["examples"].values():
        request = parse_submit(example["value"], ModelLimits())
        decoded = msgspec.convert(example["value"], wire.SubmitRequest)
        assert decoded.input.prompt == request.input.prompt


class _Answer(msgspec.Struct):
    code: int
    message: str
    data: Any


ANSWERS: dict[tuple[str, str], Any] = {
    ("/api/v1/statusTask/{model}", "get"): wire.Task,
    ("/api/v1/cancelTask/{model}", "post"): wire.CancelData,
    ("/api/v1/tasks", "get"): wire.TaskPage,
    ("/api/v1/models", "get"): wire.ModelsData,
}


@pytest.mark.parametrize("where", list(ANSWERS), ids=[p for p, _ in ANSWERS])
def test_every_answer_example_decodes_as_its_wire_model(where: tuple[str, str]) -> None:
    found = list(examples(*where))
    assert found
    for name, value in found:
        answer = msgspec.convert(value, _Answer)
        if name.startswith("200:"):
            msgspec.convert(answer.data, ANSWERS[where], strict=True)
        else:
            msgspec.convert(answer.data, wire.ErrorData)


def test_the_error_examples_decode_as_error_answers() -> None:
    for name, value in examples("/api/v1/generateTask/{model}", "post"):
        assert name.startswith("400:")
        msgspec.convert(value, wire.ErrorResponse)
    for value in SCHEMAS["ErrorResponse"]["examples"]:
        error = msgspec.convert(value, wire.ErrorResponse)
        assert refused_field({"input": {**TEXT, "prompt": ""}}) == error.data.field


@pytest.mark.parametrize("data", [
    {"taskId": "t", "state": "processing", "createTime": 1767225600000, "stage": "queued"},
    {"taskId": "t", "state": "success", "createTime": 1, "completeTime": 2, "costTime": 1,
     "resultJson": '{"resultUrls":["https://h/files/t/k/0.png"]}', "stage": "done",
     "expireTime": 3, "cost": 0.08},
    {"taskId": "t", "state": "failed", "createTime": 1, "completeTime": 2, "stage": "done",
     "failCode": "Unknown error", "failMsg": "caf\u00e9 \u2028 \"quoted\"\n\t\x01 \U0001f600"},
])
def test_a_status_body_is_the_compact_json_of_its_envelope(data: Json) -> None:
    body = StatusAnswer(data).body
    assert body == json.dumps(envelope(data), ensure_ascii=False,
                              separators=(",", ":")).encode()
    decoded = msgspec.json.decode(body, type=_Answer)
    assert msgspec.convert(decoded.data, wire.Task, strict=True).taskId == "t"

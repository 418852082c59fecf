"""The OpenAPI document: valid 3.1, complete against ROUTES, and faithful to the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from imagegate.api.app import ROUTES
from imagegate.api.openapi import openapi_document, openapi_json
from imagegate.api.waiting import MAX_WAIT_S, MIN_WAIT_S
from imagegate.contract import (
    MODES,
    OUTPUT_FORMATS,
    PROVIDERS,
    RATIOS,
    REQUEST_TYPES,
    RESOLUTIONS,
    ModelLimits,
    parse_submit,
)
from imagegate.errors import FailCode, InvalidRequest
from imagegate.idempotency import parse_idempotency
from imagegate.task_list import DEFAULT_LIMIT, MAX_LIMIT, MAX_MS

BASE_URL = "https://imagegate.example"
IMPLICIT = {"HEAD"}  # Starlette adds HEAD to every GET route


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(BASE_URL)


def schema_validator(doc: dict[str, Any], name: str) -> Any:
    """A validator for one component schema, with the document's $refs resolvable."""
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return OAS31Validator(root)


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_info_and_servers(doc: dict[str, Any]) -> None:
    assert doc["info"]["title"] == "imagegate"
    assert doc["info"]["version"]
    assert doc["servers"] == [{"url": BASE_URL}]


def test_every_route_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    served = {(route.path, method.lower())
              for route in ROUTES for method in (route.methods or set()) - IMPLICIT}
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert served == documented


def test_every_operation_has_200_405_and_500_or_is_operational(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "200" in responses, (path, method)
            assert "405" in responses, (path, method)
            if path.startswith("/api/"):
                assert {"401", "500", "503"} <= responses.keys(), (path, method)
                assert op["security"] == [{"bearerAuth": []}]


def test_submit_documents_every_http_error(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/v1/generateTask/{model}"]["post"]["responses"]
    expected = {"200", "400", "401", "402", "403", "404", "405", "413", "415", "429", "500",
                "503"}
    assert expected <= responses.keys()
    assert "Retry-After" in responses["429"]["headers"]


def test_file_download_is_public_image_with_404_and_410(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/files/{task_id}/{token}/{name}"]["get"]
    assert op["security"] == []
    assert set(op["responses"]["200"]["content"]) == {"image/png", "image/jpeg"}
    assert {"404", "410"} <= op["responses"].keys()


def test_submit_enums_are_the_contract_constants(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    top = schemas["SubmitRequest"]["properties"]
    inp = schemas["SubmitInput"]["properties"]
    assert top["request_type"]["enum"] == [*REQUEST_TYPES, None]
    assert top["provider"]["enum"] == [*PROVIDERS, None]
    assert inp["mode"]["enum"] == list(MODES)
    assert inp["aspect_ratio"]["enum"] == ["auto", *RATIOS]
    assert inp["resolution"]["enum"] == list(RESOLUTIONS)
    assert inp["output_format"]["enum"] == [*OUTPUT_FORMATS, None]


def test_submit_documents_the_400_for_search_grounding_no_route_can_do(
        doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/generateTask/{model}"]["post"]
    media = op["responses"]["400"]["content"]["application/json"]
    fields = {example["value"]["data"].get("field") for example in media["examples"].values()}
    assert "input.google_search" in fields
    assert "google_search" in op["responses"]["400"]["description"]
    google_search = doc["components"]["schemas"]["SubmitInput"]["properties"]["google_search"]
    assert "400" in google_search["description"]
    for example in media["examples"].values():
        schema_validator(doc, "ErrorResponse").validate(example["value"])


def test_webhook_bodies_document_every_refusal(doc: dict[str, Any]) -> None:
    for path in ("/api/v1/webhooks/test", "/api/v1/webhooks/secret/rotate"):
        responses = doc["paths"][path]["post"]["responses"]
        assert {"400", "413", "415"} <= responses.keys(), path
        assert "JSON object" in responses["400"]["description"], path
    test = doc["paths"]["/api/v1/webhooks/test"]["post"]
    schema = test["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["url"] and "field url" in test["responses"]["400"]["description"]


def test_submit_limits_are_the_model_limits(doc: dict[str, Any]) -> None:
    limits = ModelLimits()
    inp = doc["components"]["schemas"]["SubmitInput"]["properties"]
    assert (inp["prompt"]["minLength"], inp["prompt"]["maxLength"]) == (
        1, limits.max_prompt_chars)
    assert inp["image_urls"]["maxItems"] == limits.max_references
    assert (inp["num_images"]["minimum"], inp["num_images"]["maximum"]) == (
        1, limits.max_images)
    assert doc["components"]["schemas"]["SubmitInput"]["additionalProperties"] is True


def test_status_schema_says_result_json_is_a_string(doc: dict[str, Any]) -> None:
    task = doc["components"]["schemas"]["Task"]
    assert task["properties"]["resultJson"]["type"] == "string"
    assert task["properties"]["state"]["enum"] == ["processing", "success", "failed"]
    assert set(task["required"]) == {"taskId", "state", "createTime"}


def test_description_lists_fail_codes_and_sandbox_directives(doc: dict[str, Any]) -> None:
    text = doc["info"]["description"]
    for code in FailCode.ALL:
        assert f"`{code}`" in text
    for directive in ("[sandbox:fail=CODE]", "[sandbox:fail=CODE:N]", "[sandbox:delay=SECONDS]"):
        assert directive in text


def test_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    submit = doc["paths"]["/api/v1/generateTask/{model}"]["post"]["requestBody"]
    for example in submit["content"]["application/json"]["examples"].values():
        schema_validator(doc, "SubmitRequest").validate(example["value"])
    status = doc["paths"]["/api/v1/statusTask/{model}"]["get"]["responses"]["200"]
    for example in status["content"]["application/json"]["examples"].values():
        schema_validator(doc, "StatusResponse").validate(example["value"])


TEXT = {"mode": "text-to-image", "prompt": "a cat", "aspect_ratio": "1:1", "resolution": "1k"}
I2I = {**TEXT, "mode": "image-to-image", "image_urls": ["https://example.com/a.png"]}

ACCEPTED = [
    {"input": TEXT},
    # APIXO's own optional fields read null as absent; clients of the original API send it.
    {"input": {**TEXT, "image_urls": None, "output_format": None, "google_search": None},
     "request_type": None, "provider": None, "source": None, "callback_url": None},
    {"input": TEXT, "callback_url": ""},
    {"input": TEXT, "callback_url": 5},
    {"input": {**I2I, "image_urls": ["https://example.com/\u56fe.png"]}},
    {"input": {**TEXT, "image_urls": []}, "source": "sdk", "extra": 1},
    {"input": {**TEXT, "output_format": "jpg", "seed": 7, "num_images": 4, "x": True}},
    {"input": I2I},
    {"input": {**I2I, "image_urls": ["data:image/png;base64,AAAA"]}},
    {"input": I2I, "request_type": "callback", "callback_url": "https://example.com/hook"},
    {"input": TEXT, "provider": "value", "request_type": "async"},
]
REJECTED = [
    {},
    {"input": {**TEXT, "prompt": ""}},
    {"input": {**TEXT, "prompt": "   "}},
    {"input": {**TEXT, "prompt": "x" * 20001}},
    {"input": {**TEXT, "mode": "video"}},
    {"input": {**TEXT, "aspect_ratio": "2:1"}},
    {"input": {**TEXT, "resolution": "8k"}},
    {"input": {**TEXT, "output_format": "gif"}},
    {"input": {**TEXT, "num_images": 5}},
    {"input": {**TEXT, "seed": -1}},
    {"input": {**TEXT, "image_urls": ["https://example.com/a.png"]}},
    {"input": {**I2I, "image_urls": []}},
    {"input": {**I2I, "image_urls": ["ftp://example.com/a.png"]}},
    {"input": {**I2I, "image_urls": ["https://example.com/a.png"] * 15}},
    {"input": TEXT, "request_type": "callback"},
    {"input": TEXT, "provider": "cheapest"},
    {"input": TEXT, "source": "s" * 129},
    # The extension fields are absent or typed.
    {"input": {**TEXT, "seed": None}},
    {"input": {**TEXT, "num_images": None}},
    # null is absent, and these two are required here.
    {"input": {**I2I, "image_urls": None}},
    {"input": TEXT, "request_type": "callback", "callback_url": None},
    {"input": TEXT, "request_type": "callback", "callback_url": ""},
    {"input": TEXT, "request_type": "callback", "callback_url": "ftp://example.com/hook"},
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_schema_accepts_what_the_server_accepts(doc: dict[str, Any], body: Any) -> None:
    schema_validator(doc, "SubmitRequest").validate(body)
    parse_submit(body, ModelLimits())


@pytest.mark.parametrize("body", REJECTED)
def test_schema_rejects_what_the_server_rejects(doc: dict[str, Any], body: Any) -> None:
    assert not schema_validator(doc, "SubmitRequest").is_valid(body)
    with pytest.raises(InvalidRequest):
        parse_submit(body, ModelLimits())


def test_cancel_is_documented_with_its_answers_and_409(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/cancelTask/{model}"]["post"]
    assert op["operationId"] == "cancelTask"
    assert {"200", "400", "401", "404", "409"} <= set(op["responses"])
    for example in op["responses"]["200"]["content"]["application/json"]["examples"].values():
        schema_validator(doc, "CancelResponse").validate(example["value"])
    validator = schema_validator(doc, "CancelResponse")
    assert not validator.is_valid({"code": 200, "message": "success",
                                   "data": {"taskId": "x", "state": "failed",
                                            "refunded": True}})
    assert FailCode.CANCELED in doc["components"]["schemas"]["Task"]["properties"][
        "failCode"]["examples"]


def test_the_list_and_models_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    for path, schema in (("/api/v1/tasks", "TaskListResponse"),
                         ("/api/v1/models", "ModelsResponse")):
        ok = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{schema}"}
        for example in ok["examples"].values():
            schema_validator(doc, schema).validate(example["value"])


def test_the_list_parameters_are_the_parsers_limits(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/tasks"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"limit", "cursor", "state", "model", "createdAfter", "createdBefore"}
    assert not any(p["required"] for p in params.values())
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (
        1, MAX_LIMIT, DEFAULT_LIMIT)
    assert params["state"]["schema"]["items"]["enum"] == ["processing", "success", "failed"]
    assert (params["state"]["style"], params["state"]["explode"]) == ("form", False)
    assert params["createdAfter"]["schema"]["maximum"] == MAX_MS
    assert "400" in op["responses"]


def test_a_list_item_is_the_task_with_its_source(doc: dict[str, Any]) -> None:
    item = {"taskId": "t", "state": "success", "createTime": 1, "resultJson": "{}",
            "source": "app"}
    schema_validator(doc, "TaskListItem").validate(item)
    assert not schema_validator(doc, "TaskListItem").is_valid({**item, "source": 5})
    assert not schema_validator(doc, "TaskListItem").is_valid({"taskId": "t"})


def test_status_documents_the_wait_parameter_with_its_range(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/statusTask/{model}"]["get"]
    assert {"$ref": "#/components/parameters/wait"} in op["parameters"]
    wait = doc["components"]["parameters"]["wait"]
    assert (wait["in"], wait["required"]) == ("query", False)
    assert wait["schema"] == {"type": "integer", "minimum": MIN_WAIT_S, "maximum": MAX_WAIT_S}
    assert "field wait" in op["responses"]["400"]["description"]


def test_submit_documents_prefer_and_both_of_its_answers(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/generateTask/{model}"]["post"]
    assert {"$ref": "#/components/parameters/Prefer"} in op["parameters"]
    assert doc["components"]["parameters"]["Prefer"]["in"] == "header"
    assert "field Prefer" in op["responses"]["400"]["description"]
    ok = op["responses"]["200"]
    assert "Preference-Applied" in ok["headers"]
    schema = {**ok["content"]["application/json"]["schema"], "components": doc["components"]}
    validator = OAS31Validator(schema)
    validator.validate({"code": 200, "message": "success", "data": {"taskId": "0" * 32}})
    status = doc["paths"]["/api/v1/statusTask/{model}"]["get"]["responses"]["200"]
    for example in status["content"]["application/json"]["examples"].values():
        validator.validate(example["value"])
    assert not validator.is_valid({"code": 200, "message": "success", "data": {}})


def test_submit_documents_the_idempotency_key_and_its_409(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/generateTask/{model}"]["post"]
    assert {"$ref": "#/components/parameters/Idempotency-Key"} in op["parameters"]
    param = doc["components"]["parameters"]["Idempotency-Key"]
    assert (param["name"], param["in"], param["required"]) == ("Idempotency-Key", "header", False)
    assert "field Idempotency-Key" in op["responses"]["400"]["description"]
    assert "field Idempotency-Key" in op["responses"]["409"]["description"]
    # The schema takes exactly the values the service takes.
    validator = OAS31Validator(param["schema"])
    for value in ("a", "~" * 255, "order 17/x"):
        assert validator.is_valid(value)
        assert parse_idempotency(value, "m", b"") is not None
    for value in ("", "x" * 256, "tab\there", "caf\u00e9"):
        assert not validator.is_valid(value)
        with pytest.raises(InvalidRequest):
            parse_idempotency(value, "m", b"")


def test_the_served_bytes_are_the_document(doc: dict[str, Any]) -> None:
    served = openapi_json(BASE_URL)
    assert json.loads(served) == doc
    assert openapi_json(BASE_URL) is served  # built once

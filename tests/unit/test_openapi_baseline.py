"""The served document says at least everything the hand-written one said
(``data/openapi_before_models.json``, captured before it was built from the wire models):
every operation with its parameters, security, response codes and examples; every component;
every property of every schema, with its enumeration, limits and type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegate.api.openapi import openapi_document

BEFORE = json.loads((Path(__file__).parent / "data" / "openapi_before_models.json").read_text())
# Keywords whose value is a promise to clients: the new document must keep each one.
CONSTRAINTS = ("enum", "const", "minimum", "maximum", "minLength", "maxLength", "minItems",
               "maxItems", "pattern", "format", "default", "uniqueItems", "contentMediaType")

Json = dict[str, Any]


@pytest.fixture(scope="module")
def now() -> Json:
    return openapi_document("https://imagegate.example")


def operations(doc: Json) -> Iterator[tuple[str, str, Json]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def resolve(doc: Json, node: Json) -> Json:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = doc["components"][section][name]
    return node


def parameters(doc: Json, op: Json) -> dict[tuple[str, str], Json]:
    found = (resolve(doc, p) for p in op.get("parameters", []))
    return {(p["name"], p["in"]): p for p in found}


def facts(doc: Json, schema: Any, path: str = "", seen: frozenset[str] = frozenset()
          ) -> set[tuple[str, str, str]]:
    """What ``schema`` promises: (property path, keyword, value) for every property reached
    through $ref, allOf, anyOf, oneOf, if/then/else, items and additionalProperties, with the
    types each path may take. Nullable shapes (``type: [T, null]`` or ``anyOf`` with null)
    count the same."""
    out: set[tuple[str, str, str]] = set()
    if not isinstance(schema, dict):
        return out
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            return out
        return facts(doc, resolve(doc, schema), path, seen | {ref})
    types = schema.get("type")
    for t in types if isinstance(types, list) else [types] if types else []:
        out.add((path, "type", t))
    for key in CONSTRAINTS:
        if key in schema:
            values = schema[key] if key == "enum" else [schema[key]]
            out |= {(path, key, json.dumps(v)) for v in values}
    for name, sub in schema.get("properties", {}).items():
        out.add((path, "property", name))
        out |= facts(doc, sub, f"{path}.{name}", seen)
    for name in schema.get("required", []):
        out.add((path, "required", name))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            out |= facts(doc, sub, path, seen)
    for key in ("then", "else", "not"):
        out |= {(f"{key}:{p}", k, v) for p, k, v in facts(doc, schema.get(key), path, seen)}
    out |= facts(doc, schema.get("items"), f"{path}[]", seen)
    out |= facts(doc, schema.get("additionalProperties"), f"{path}{{}}", seen)
    return out


def test_every_operation_is_still_there_with_its_id_tags_and_security(now: Json) -> None:
    for path, method, op in operations(BEFORE):
        new = now["paths"][path][method]
        for key in ("operationId", "tags", "security"):
            assert new.get(key) == op.get(key), (path, method, key)
        assert new.get("summary"), (path, method)


def test_every_parameter_is_still_there_with_its_schema(now: Json) -> None:
    for path, method, op in operations(BEFORE):
        new = parameters(now, now["paths"][path][method])
        for key, param in parameters(BEFORE, op).items():
            assert key in new, (path, method, key)
            assert new[key]["required"] == param["required"], (path, method, key)
            assert facts(BEFORE, param["schema"]) <= facts(now, new[key]["schema"]), key
            for extra in ("style", "explode", "example"):
                assert new[key].get(extra) == param.get(extra), (path, method, key, extra)


def test_every_response_code_header_and_example_is_still_there(now: Json) -> None:
    for path, method, op in operations(BEFORE):
        new = now["paths"][path][method]
        assert op["responses"].keys() <= new["responses"].keys(), (path, method)
        for code, response in op["responses"].items():
            old, fresh = resolve(BEFORE, response), resolve(now, new["responses"][code])
            assert old.get("headers", {}).keys() <= fresh.get("headers", {}).keys()
            assert old.get("content", {}).keys() <= fresh.get("content", {}).keys()
            for media, content in old.get("content", {}).items():
                got = fresh["content"][media]
                assert content.get("examples", {}).keys() <= got.get("examples", {}).keys()
                assert facts(BEFORE, content["schema"]) <= facts(now, got["schema"]), (
                    path, method, code)


def test_every_request_body_is_still_described(now: Json) -> None:
    for path, method, op in operations(BEFORE):
        if "requestBody" not in op:
            continue
        old = op["requestBody"]
        new = now["paths"][path][method]["requestBody"]
        assert new["required"] == old["required"]
        for media, content in old["content"].items():
            got = new["content"][media]
            assert content.get("examples", {}).keys() <= got.get("examples", {}).keys()
            assert facts(BEFORE, content["schema"]) <= facts(now, got["schema"]), path


@pytest.mark.parametrize("section", ["schemas", "parameters", "headers", "responses",
                                     "securitySchemes"])
def test_every_component_is_still_there(now: Json, section: str) -> None:
    assert BEFORE["components"][section].keys() <= now["components"][section].keys()


@pytest.mark.parametrize("name", sorted(BEFORE["components"]["schemas"]))
def test_every_schema_keeps_its_properties_and_constraints(now: Json, name: str) -> None:
    old = facts(BEFORE, BEFORE["components"]["schemas"][name])
    new = facts(now, now["components"]["schemas"][name])
    assert old <= new, sorted(old - new)


def test_the_description_and_tags_are_kept(now: Json) -> None:
    assert now["info"]["description"] == BEFORE["info"]["description"]
    assert [t["name"] for t in BEFORE["tags"]] == [t["name"] for t in now["tags"]][
        :len(BEFORE["tags"])]

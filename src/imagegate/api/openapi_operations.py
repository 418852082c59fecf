"""An operation of the OpenAPI document, described compactly (``Operation``), and the building
blocks its answers are made of. The shapes come from the wire models (``openapi_models``); an
operation says only what is its own: parameters, body, answers and their wording."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Operation", "enveloped", "error", "ok", "path_param", "query", "ref"]

Json = dict[str, Any]

_BEARER: list[Json] = [{"bearerAuth": []}]


def ref(section: str, name: str) -> Json:
    return {"$ref": f"#/components/{section}/{name}"}


# What every operation of the API may answer besides its own answers; a public one, only 405.
_SHARED: dict[str, Json] = {"401": ref("responses", "Unauthorized"),
                            "405": ref("responses", "MethodNotAllowed"),
                            "500": ref("responses", "InternalError"),
                            "503": ref("responses", "NotReady")}


@dataclass(frozen=True)
class Operation:
    """One operation. ``params``: a name is the component parameter of that name, a dict an
    inline one. ``answers``: by HTTP status, a string is an error answer so described, a dict
    the response as is. ``public``: no API key (the API's operations take one, and answer 401,
    405, 500 and 503 as every operation does unless ``answers`` says otherwise)."""

    id: str
    tag: str
    summary: str
    answers: Mapping[int, str | Json]
    description: str = ""
    params: tuple[str | Json, ...] = ()
    body: Json | None = None
    public: bool = False
    extra: Json = field(default_factory=dict)

    def render(self) -> Json:
        op: Json = {"operationId": self.id, "tags": [self.tag], "summary": self.summary}
        if self.description:
            op["description"] = self.description
        op["security"] = [] if self.public else _BEARER
        if self.params:
            op["parameters"] = [ref("parameters", p) if isinstance(p, str) else p
                                for p in self.params]
        if self.body is not None:
            op["requestBody"] = self.body
        shared = {"405": _SHARED["405"]} if self.public else _SHARED
        own = {str(code): error(code, answer) if isinstance(answer, str) else answer
               for code, answer in self.answers.items()}
        op["responses"] = dict(sorted({**shared, **own}.items()))
        return {**op, **self.extra}


def ok(description: str, schema: str, examples: Json | None = None, *,
       headers: Json | None = None) -> Json:
    """A 200 answer: the component schema ``schema`` as JSON."""
    media: Json = {"schema": ref("schemas", schema)}
    if examples:
        media["examples"] = examples
    response: Json = {"description": description, "content": {"application/json": media}}
    if headers:
        response["headers"] = headers
    return response


def error(status: int, description: str, *, headers: Json | None = None,
          examples: Json | None = None) -> Json:
    """An error answer: the error envelope, its ``code`` the HTTP status."""
    schema = {"allOf": [ref("schemas", "ErrorResponse"),
                        {"properties": {"code": {"const": status}}}]}
    media: Json = {"schema": schema}
    if examples:
        media["examples"] = examples
    response: Json = {"description": description, "content": {"application/json": media}}
    if headers:
        response["headers"] = headers
    return response


def path_param(name: str, description: str) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def query(name: str, description: str, schema: Json, *, example: Any = None) -> Json:
    param: Json = {"name": name, "in": "query", "required": False, "description": description,
                   "schema": schema}
    if example is not None:
        param["example"] = example
    return param


def enveloped(data: Any) -> Json:
    """The success envelope around ``data``, for examples."""
    return {"code": 200, "message": "success", "data": data}

"""The schemas of the OpenAPI document, generated from the wire models
(``imagegate_client.wire_models``): each struct is the component of its name, with the descriptions,
enumerations, limits and defaults written on its fields, and the answers are those models in the
envelope. Nothing here describes a field: a change of the wire models is a change of the
document, and of the client that reads them."""

from __future__ import annotations

from typing import Any

import msgspec
from imagegate_client import wire_models as wire

__all__ = ["model_schemas", "schema_ref"]

Json = dict[str, Any]

_REF = "#/components/schemas/{name}"
# The structs with a component of their own; the ones they hold come with them.
_MODELS: tuple[Any, ...] = (
    wire.Envelope, wire.ErrorResponse, wire.SubmitRequest, wire.SubmitData, wire.Task,
    wire.ResultJson, wire.CancelData, wire.TaskPage, wire.ModelsData, wire.Health,
)


def schema_ref(name: str) -> Json:
    return {"$ref": _REF.format(name=name)}


def model_schemas() -> Json:
    """Every component schema: the wire models', and each answer in its envelope."""
    _, components = msgspec.json.schema_components(_MODELS, ref_template=_REF)
    schemas = {name: _component(name, schema) for name, schema in components.items()}
    return {**schemas, **_answers(), "BalanceResponse": _success(
        _tidy(msgspec.json.schema(wire.Balance)), "Balance answer: data is a bare number, USD.")}


def _component(name: str, schema: Json) -> Json:
    schema = _tidy(schema)
    schema.pop("title", None)
    if "description" in schema:  # the struct's docstring, as one Markdown paragraph
        schema["description"] = " ".join(schema["description"].split()).replace("``", "`")
    return {**schema, **getattr(wire, name).__dict__.get("json_schema_extra", {})}


def _answers() -> Json:
    """The success answers: the envelope, with ``code`` 200, ``message`` success and the
    operation's ``data``."""
    return {
        "SubmitResponse": _success(schema_ref("SubmitData"), "Submit answer: data.taskId."),
        "StatusResponse": _success(schema_ref("Task"), "Status answer: data is the task."),
        "CancelResponse": _success(schema_ref("CancelData"), "Cancel answer (extension)."),
        "TaskListResponse": _success(schema_ref("TaskPage"),
                                     "List answer: a page of the key's tasks."),
        "ModelsResponse": _success(schema_ref("ModelsData"), "Models answer: the models the "
                                                             "key may use, in catalogue order."),
        "HealthResponse": _success(schema_ref("Health"), "Health or readiness answer."),
    }


def _success(data: Json, description: str) -> Json:
    return {"description": description,
            "allOf": [schema_ref("Envelope"),
                      {"properties": {"code": {"const": 200}, "message": {"const": "success"},
                                      "data": data}}]}


def _tidy(schema: Any) -> Any:
    """``schema`` with msgspec's spelling of an optional value made the document's: a
    ``type`` list that holds ``"null"`` instead of ``anyOf`` with ``{"type": "null"}``."""
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _tidy(value) for key, value in schema.items()}
    branches = schema.get("anyOf")
    if not branches or {"type": "null"} not in branches:
        return schema
    others = [b for b in branches if b != {"type": "null"}]
    if "type" in schema and all(b.keys() == {"type"} for b in others):
        del schema["anyOf"]  # the field's own type list already says it
    elif len(others) == 1 and "$ref" not in others[0] and "type" in others[0]:
        del schema["anyOf"]
        schema = {**others[0], **schema, "type": [others[0]["type"], "null"]}
    return schema

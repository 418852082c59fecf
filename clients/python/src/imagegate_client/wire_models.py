"""The wire models of imagegate's task API (docs/contract.md): what goes over HTTP, as msgspec
structs, shared by the service (its validator's enumerations and limits, its OpenAPI document)
and by this client.

Each struct's JSON Schema is the component of the same name in the service's ``/openapi.json``:
the descriptions, enumerations, limits and defaults written here are what that document says.
Enumerations are plain strings named by ``one_of`` (the schema keeps the order written here; an
answer with a value this version does not know still decodes), and a field left out of an
answer is ``UNSET``, never ``None``: the service omits what does not apply.

A struct may carry ``json_schema_extra``, keywords its schema needs beyond its fields' own (the
rules between fields: ``if``/``then``/``else``).

The limits of what only the service answers (a page's length, a source's, a queue position,
a model's lists and counts) are written as ``extra_json_schema``: the document states them,
but decoding does not enforce them, so that a server that raises one of its input limits does
not break the clients already deployed. The limits of what a client sends stay ``Meta``
constraints, which the service enforces.

    >>> import msgspec
    >>> msgspec.json.decode(b'{"taskId": "t", "state": "processing", "createTime": 1}',
    ...                     type=Task).state
    'processing'
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "CANCEL_STATES",
    "FAIL_CODES",
    "MAX_IMAGES",
    "MAX_PAGE_TASKS",
    "MAX_PROMPT_CHARS",
    "MAX_REFERENCES",
    "MAX_SEED",
    "MAX_SOURCE_CHARS",
    "MAX_URL_CHARS",
    "MODES",
    "OUTPUT_FORMATS",
    "PROVIDERS",
    "RATIOS",
    "REQUEST_TYPES",
    "RESOLUTIONS",
    "STAGES",
    "UNSET",
    "WIRE_STATES",
    "Balance",
    "CancelData",
    "Envelope",
    "ErrorData",
    "ErrorResponse",
    "Health",
    "Model",
    "ModelsData",
    "ResultJson",
    "RouteHealth",
    "SubmitData",
    "SubmitInput",
    "SubmitRequest",
    "Task",
    "TaskListItem",
    "TaskPage",
    "UnsetType",
    "one_of",
]

# Enumerations ------------------------------------------------------------------------------------

MODES: tuple[str, ...] = ("text-to-image", "image-to-image")
RATIOS: tuple[str, ...] = (
    "1:1", "1:4", "4:1", "1:8", "8:1", "2:3", "3:2",
    "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)
RESOLUTIONS: tuple[str, ...] = ("1k", "2k", "4k")
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "jpg")
REQUEST_TYPES: tuple[str, ...] = ("async", "callback")
PROVIDERS: tuple[str, ...] = ("auto", "value", "official")
WIRE_STATES: tuple[str, ...] = ("processing", "success", "failed")
STAGES: tuple[str, ...] = ("queued", "running", "fetching", "generating", "storing", "retrying",
                           "done")
CANCEL_STATES: tuple[str, ...] = ("canceled", "cancelling")
# The failCodes imagegate emits (docs/contract.md §7); clients treat failCode as an open string.
FAIL_CODES: tuple[str, ...] = ("PromptInvalid", "SensitiveContent", "ImageFormatIncorrect",
                               "MissingParameter", "RateLimited", "Timeout", "Unknown error",
                               "Canceled")

# Limits (nano-banana-2's; each catalogue model may set its own) ----------------------------------

MAX_PROMPT_CHARS = 20000  # Unicode code points
MAX_REFERENCES = 14
MAX_IMAGES = 4
MAX_SEED = 2**63 - 1
MAX_SOURCE_CHARS = 128
MAX_URL_CHARS = 4096
MAX_PAGE_TASKS = 100  # the largest limit of the task list

_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://"
_DATA_URI_PATTERN = "^data:image/[^;,]+;base64,"
_MS = "Unix time in milliseconds"


def one_of(values: tuple[str, ...], description: str | None = None) -> Meta:
    """A string that is one of ``values``, in this order in the schema."""
    return Meta(description=description,
                extra_json_schema={"type": "string", "enum": list(values)})


def _absent(description: str) -> str:
    return f"{description} null is read as absent."


# The submit body (docs/contract.md §4) -----------------------------------------------------------

_CALLBACK_URL = ("Required when request_type is callback: an http or https URL, https and "
                 "resolving to a public address unless the operator allows otherwise.")


def _url_schema(description: str) -> dict[str, Any]:
    """An http or https URL as the service takes it: an IRI (non-ASCII is taken, and
    percent-encoded when sent), no control characters, at most ``MAX_URL_CHARS``."""
    return {"type": "string", "format": "iri", "maxLength": MAX_URL_CHARS,
            "pattern": _URL_PATTERN, "description": description}


_REFERENCE = Annotated[str, Meta(extra_json_schema={"anyOf": [
    _url_schema("An http or https URL, fetched when the task runs."),
    {"type": "string", "pattern": _DATA_URI_PATTERN,
     "description": "Extension: a data:image/...;base64, URI."}]})]


class SubmitInput(Struct, kw_only=True, omit_defaults=True):
    """Unknown fields are ignored. Limits shown are nano-banana-2's."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "additionalProperties": True,
        "if": {"required": ["mode"], "properties": {"mode": {"const": "image-to-image"}}},
        "then": {"required": ["image_urls"],
                 "properties": {"image_urls": {"type": "array", "minItems": 1}}},
        "else": {"properties": {"image_urls": {"maxItems": 0}}},
    }

    mode: Annotated[str, one_of(MODES)]
    prompt: Annotated[str, Meta(
        min_length=1, max_length=MAX_PROMPT_CHARS, pattern="\\S",
        description="Counted in Unicode code points; not only whitespace. May hold sandbox "
                    "directives.")]
    aspect_ratio: Annotated[str, Meta(
        description="auto: 1:1 for text-to-image, the ratio nearest the first reference image "
                    "for image-to-image.",
        extra_json_schema={"type": "string", "enum": ["auto", *RATIOS]})]
    resolution: Annotated[str, one_of(RESOLUTIONS, 'Case-insensitive ("1K" is accepted).')]
    image_urls: Annotated[list[_REFERENCE] | None, Meta(
        description=_absent(
            f"1 to {MAX_REFERENCES} reference images, required for image-to-image; absent, "
            "null or [] for text-to-image. A reference that cannot be fetched or decoded "
            "fails the task with ImageFormatIncorrect."),
        extra_json_schema={"maxItems": MAX_REFERENCES})] | UnsetType = UNSET
    output_format: Annotated[str | None, Meta(
        description=_absent("Case-insensitive; jpg and jpeg both mean JPEG, the file "
                            "extension follows the value asked for."),
        extra_json_schema={"type": ["string", "null"],
                           "enum": [*OUTPUT_FORMATS, None]})] = "png"
    google_search: Annotated[bool | None, Meta(
        description=_absent("Ground on Google Search. Only routes that can ground take the "
                            "task; when no configured route of the model can, the submit "
                            "answers 400 naming input.google_search (the sandbox can)."),
        extra_json_schema={"type": ["boolean", "null"]})] = False
    seed: Annotated[int, Meta(
        ge=0, le=MAX_SEED, description="Extension: for reproducible routes. Absent or an "
                                       "integer; null is refused.")] | UnsetType = UNSET
    num_images: Annotated[int, Meta(
        ge=1, le=MAX_IMAGES, description="Extension: images to make, billed per image.")] = 1


class SubmitRequest(Struct, kw_only=True, omit_defaults=True):
    """Unknown top-level fields are ignored. Any broken rule: 400 naming the field, nothing
    stored, nothing charged."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "additionalProperties": True,
        "if": {"required": ["request_type"],
               "properties": {"request_type": {"const": "callback"}}},
        "then": {"required": ["callback_url"],
                 "properties": {"callback_url": _url_schema(_CALLBACK_URL)}},
    }

    input: SubmitInput
    request_type: Annotated[str | None, Meta(
        description=_absent("callback: the final status envelope is POSTed to callback_url "
                            "(signed, Standard Webhooks style)."),
        extra_json_schema={"type": ["string", "null"],
                           "enum": [*REQUEST_TYPES, None]})] = "async"
    callback_url: Annotated[Any, Meta(
        description=f"{_CALLBACK_URL} Ignored, whatever it holds, unless request_type is "
                    "callback (SDKs send empty defaults).")] = None
    provider: Annotated[str | None, Meta(
        description=_absent("Routing preference: auto (catalogue order), value (cheapest "
                            "healthy route), official (maker's routes)."),
        extra_json_schema={"type": ["string", "null"], "enum": [*PROVIDERS, None]})] = "auto"
    source: Annotated[str | None, Meta(
        description=_absent("Free text; stored, otherwise ignored."),
        extra_json_schema={"type": ["string", "null"], "maxLength": MAX_SOURCE_CHARS})] = None


class SubmitData(Struct, kw_only=True):
    """The ``data`` of a submit answer."""

    taskId: Annotated[str, Meta(
        description="Opaque, unguessable task id (32 hex characters).")]


# The task (docs/contract.md §5) ------------------------------------------------------------------


class ResultJson(Struct, kw_only=True):
    """What a successful task's ``resultJson`` string holds."""

    resultUrls: Annotated[list[Annotated[str, Meta(extra_json_schema={"format": "uri"})]], Meta(
        description="Absolute, unguessable URLs that need no authentication.")]


class Task(Struct, kw_only=True, omit_defaults=True):
    """A task. Fields that are not present are omitted, never sent as null."""

    json_schema_extra: ClassVar[dict[str, Any]] = {"additionalProperties": True}

    taskId: Annotated[str, Meta(description="Always present.")]
    state: Annotated[str, one_of(WIRE_STATES, "Always present; a queued task is processing "
                                              "too.")]
    createTime: Annotated[int, Meta(description=f"{_MS}. Always present.")]
    resultJson: Annotated[str, Meta(
        description='A STRING holding JSON {"resultUrls": ["https://..."]}; parse it with '
                    "JSON.parse. Present only when state is success.",
        extra_json_schema={"contentMediaType": "application/json",
                           "contentSchema": {"$ref": "#/components/schemas/ResultJson"}},
    )] | UnsetType = UNSET
    completeTime: Annotated[int, Meta(
        description=f"{_MS}. Present when state is success or failed.")] | UnsetType = UNSET
    costTime: Annotated[int, Meta(
        description="Milliseconds, completeTime - createTime. Present only when state is "
                    "success.")] | UnsetType = UNSET
    failCode: Annotated[str, Meta(
        examples=list(FAIL_CODES),
        description="Present only when state is failed. An open string; imagegate emits "
                    + ", ".join(f"`{c}`" for c in FAIL_CODES[:-1])
                    + f", and `{FAIL_CODES[-1]}` for a task its client cancelled (extension: "
                    "cancelTask).")] | UnsetType = UNSET
    failMsg: Annotated[str, Meta(
        description="For a person. Present only when state is failed.")] | UnsetType = UNSET
    stage: Annotated[str, Meta(
        examples=list(STAGES),
        description="Extension, always sent: " + ", ".join(STAGES[:-1])
                    + f" or {STAGES[-1]} (an open string).")] | UnsetType = UNSET
    expireTime: Annotated[int, Meta(
        description="Extension: Unix ms after which the result URLs answer 410. Present only "
                    "when state is success.")] | UnsetType = UNSET
    cost: Annotated[float, Meta(
        extra_json_schema={"minimum": 0},
        description="Extension: USD charged. Present only once the charge is settled "
                    "(a successful task).")] | UnsetType = UNSET
    queuePosition: Annotated[int, Meta(
        extra_json_schema={"minimum": 1},
        description="Extension, in streamTask's status events only, while the task waits in "
                    "the queue (stage queued or retrying): 1 + the queued tasks of any model, "
                    "ready to run, that workers claim before it (oldest first; 1 = next to be "
                    "claimed). A task waiting for its retry is placed where it stands once "
                    "due. With workers dedicated to some models it counts other models' tasks "
                    "too: at most the number ahead.",
    )] | UnsetType = UNSET


class TaskListItem(Task, kw_only=True, omit_defaults=True):
    """A task exactly as statusTask answers it, its model, and its source."""

    model: Annotated[str, Meta(
        examples=["nano-banana-2"],
        description="Extension of the list, always sent: the model the task was submitted "
                    "to, the {model} to read, stream or cancel it with.")] | UnsetType = UNSET
    source: Annotated[str, Meta(
        extra_json_schema={"maxLength": MAX_SOURCE_CHARS},
        description="Extension of the list: the source the submit sent; absent when it sent "
                    "none.")] | UnsetType = UNSET


class TaskPage(Struct, kw_only=True):
    """The ``data`` of a list answer: a page of the key's tasks."""

    tasks: Annotated[list[TaskListItem], Meta(
        extra_json_schema={"maxItems": MAX_PAGE_TASKS}, description="Newest first; at most limit.")]
    nextCursor: Annotated[str | None, Meta(
        description="The cursor of the next page; null on the last.")]


class CancelData(Struct, kw_only=True):
    """The ``data`` of a cancel answer (extension)."""

    taskId: str
    state: Annotated[str, one_of(CANCEL_STATES, "canceled: the task was queued and is "
                                                "cancelled now; cancelling: it runs, and its "
                                                "worker is told to stop.")]
    refunded: Annotated[bool, Meta(
        description="Whether the price is back in the balance now: true with canceled, false "
                    "with cancelling (the refund comes when the task ends cancelled).")]


# The catalogue (docs/contract.md §9) -------------------------------------------------------------


_LISTED = Meta(extra_json_schema={"minItems": 1, "uniqueItems": True})
_Ratios = Annotated[list[Annotated[str, one_of(RATIOS)]], _LISTED]
_Resolutions = Annotated[list[Annotated[str, one_of(RESOLUTIONS)]], _LISTED]
_OutputFormats = Annotated[list[Annotated[str, one_of(OUTPUT_FORMATS)]], _LISTED]
_COUNT = Meta(extra_json_schema={"minimum": 1})


class Model(Struct, kw_only=True):
    """A model the key may use, with what its submit accepts and its prices."""

    id: Annotated[str, Meta(description="The {model} of generateTask and statusTask.")]
    aspectRatios: Annotated[_Ratios, Meta(
        description="The aspect_ratio values it takes; auto is taken too.")]
    resolutions: Annotated[_Resolutions, Meta(
        description="The resolution values it takes (any case).")]
    outputFormats: Annotated[_OutputFormats, Meta(
        description="The output_format values it takes.")]
    maxPromptChars: Annotated[int, _COUNT, Meta(
        description="The longest prompt, in Unicode code points.")]
    maxReferences: Annotated[int, _COUNT, Meta(
        description="The most image_urls of an image-to-image task.")]
    maxImages: Annotated[int, _COUNT, Meta(
        description="The largest num_images of a task.")]
    prices: Annotated[dict[str, Annotated[float, Meta(extra_json_schema={"minimum": 0})]], Meta(
        description="USD charged per output image, by resolution (each of resolutions).",
        extra_json_schema={"propertyNames": {"enum": list(RESOLUTIONS)}})]
    googleSearch: Annotated[bool, Meta(
        description="Whether a route of the model can ground on Google Search: google_search "
                    "true is taken.")]
    sandbox: Annotated[bool, Meta(
        description="Whether only the sandbox serves it (test mode: a picture of the prompt, "
                    "no model).")]


class ModelsData(Struct, kw_only=True):
    """The ``data`` of the models answer."""

    models: list[Model]


# The account and the process ---------------------------------------------------------------------

Balance = Annotated[float, Meta(
    description="USD available now, holds deducted (up to 6 decimal places).",
    examples=[9.95])]


class RouteHealth(Struct, kw_only=True, omit_defaults=True):
    """One route's health, as readyz shows it."""

    circuit: Annotated[str, one_of(("closed", "open", "half-open", "unavailable"))]
    failures: Annotated[int, Meta(ge=0, description="Failures in a row.")]
    retryInS: Annotated[float, Meta(
        ge=0, description="Seconds until an open circuit lets a trial in.")]
    reason: Annotated[str, Meta(description="Why the route is unavailable.")] | UnsetType = UNSET


class Health(Struct, kw_only=True, omit_defaults=True):
    """The ``data`` of healthz and readyz."""

    status: Annotated[str, one_of(("ok", "ready"))]
    routes: dict[str, RouteHealth] | UnsetType = UNSET


# The envelope (docs/contract.md §3) --------------------------------------------------------------


class Envelope(Struct, kw_only=True):
    """Every JSON response, success or error."""

    code: Annotated[int, Meta(description="Repeats the HTTP status.")]
    message: Annotated[str, Meta(
        description='"success" on success; the status reason on an error.')]
    data: Annotated[Any, Meta(description="The answer; its shape depends on the operation.")]


class ErrorData(Struct, kw_only=True, omit_defaults=True):
    """The ``data`` of an error answer."""

    error: Annotated[str, Meta(description="What is wrong, for a person.")]
    field: Annotated[str, Meta(
        description="JSON path of the field at fault (e.g. input.prompt); present only when "
                    "one field is at fault.")] | UnsetType = UNSET


class ErrorResponse(Struct, kw_only=True):
    """A request error: the HTTP status is the real non-2xx status."""

    json_schema_extra: ClassVar[dict[str, Any]] = {"examples": [{
        "code": 400, "message": "Invalid request",
        "data": {"error": "input.prompt must be 1 to 20000 characters, not only whitespace",
                 "field": "input.prompt"}}]}

    code: Annotated[int, Meta(description="Repeats the HTTP status.")]
    message: Annotated[str, Meta(description="The status reason.")]
    data: ErrorData

"""The arguments of the MCP tools, as annotated types: each one's JSON Schema (what an assistant
reads in ``tools/list``) and its validation (run before any request goes out) come from the
same annotation, and every limit from ``imagegate_client.wire_models``, the contract's one
statement of them (docs/contract.md §4).

The limits are nano-banana-2's, the contract's table; a catalogue model may set narrower ones,
which the service enforces (the tool answers its 400 as an error naming the field).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from imagegate_client import wire_models as wm
from pydantic import AfterValidator, Field

RATIO_CHOICES: tuple[str, ...] = ("auto", *wm.RATIOS)


def _member_of(name: str, values: Sequence[str]) -> Callable[[str], str]:
    """A validator: the value, lowercased, when it is one of ``values`` (the contract takes
    them in any case); else a ValueError that lists them."""

    def check(value: str) -> str:
        if value.lower() not in values:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(values)}")
        return value.lower()

    return check


def _enum(values: Sequence[str], description: str) -> Any:
    """The schema of a string that is one of ``values``."""
    return Field(description=description, json_schema_extra={"enum": list(values)})


def _each_state(states: list[str]) -> list[str]:
    check = _member_of("state", wm.WIRE_STATES)
    return [check(state) for state in states]


Prompt = Annotated[str, Field(
    min_length=1, max_length=wm.MAX_PROMPT_CHARS, pattern=r"\S",
    description=f"What to draw, or how to change the references: 1 to {wm.MAX_PROMPT_CHARS} "
                "characters (Unicode code points), not only whitespace.")]

AspectRatio = Annotated[str, _enum(
    RATIO_CHOICES, "Aspect ratio of the image. auto: 1:1 without references, the ratio "
                   "nearest the first reference's with them."),
    AfterValidator(_member_of("aspect_ratio", RATIO_CHOICES))]

Resolution = Annotated[str, _enum(
    wm.RESOLUTIONS, "Size tier: 1k (about one megapixel), 2k (four) or 4k (sixteen); the "
                    "larger cost more (list_models shows the prices)."),
    AfterValidator(_member_of("resolution", wm.RESOLUTIONS))]

OutputFormat = Annotated[str, _enum(
    wm.OUTPUT_FORMATS, "Image format: png, or jpeg (jpg is the same, named so)."),
    AfterValidator(_member_of("output_format", wm.OUTPUT_FORMATS))]

_REFERENCE = Annotated[str, Field(
    min_length=1, description="An http(s) URL the service fetches, a data:image/...;base64, "
                              "URI, or a path to a PNG, JPEG, GIF, WebP or HEIC file on the "
                              "machine running this MCP server (sent inside the request).")]

_IMAGES = (f"Reference images, 1 to {wm.MAX_REFERENCES}: the model draws from them "
           "(image-to-image).")
OptionalReferences = Annotated[list[_REFERENCE] | None, Field(
    max_length=wm.MAX_REFERENCES, description=f"{_IMAGES} Leave out for text-to-image.")]
References = Annotated[list[_REFERENCE], Field(
    min_length=1, max_length=wm.MAX_REFERENCES, description=_IMAGES)]

NumImages = Annotated[int, Field(
    ge=1, le=wm.MAX_IMAGES, description=f"Images to make, 1 to {wm.MAX_IMAGES}; each is "
                                        "billed.")]

Seed = Annotated[int | None, Field(
    ge=0, le=wm.MAX_SEED, description="A seed, for routes that can reproduce an image.")]

GoogleSearch = Annotated[bool, Field(
    description="Ground the image on Google Search (only models with googleSearch in "
                "list_models).")]

Model = Annotated[str | None, Field(
    min_length=1, description="Model id (list_models); default: the one this server was "
                              "started with.")]

TaskId = Annotated[str, Field(min_length=1, description="The task's id, as generate_image, "
                                                        "edit_image or list_tasks gave it.")]

TaskModel = Annotated[str | None, Field(
    min_length=1, description="The model the task was submitted to (list_tasks shows it); "
                              "default: the one this server was started with.")]

States = Annotated[list[Annotated[str, _enum(wm.WIRE_STATES, "A task state.")]] | None, Field(
    description="Only tasks in these states (processing, success, failed); default: every "
                "state."), AfterValidator(lambda s: None if s is None else _each_state(s))]

ModelFilter = Annotated[str | None, Field(
    min_length=1, description="Only tasks of this model; default: every model.")]

Limit = Annotated[int, Field(
    ge=1, le=wm.MAX_PAGE_TASKS, description=f"Tasks in the page, 1 to {wm.MAX_PAGE_TASKS}.")]

Cursor = Annotated[str | None, Field(
    min_length=1, description="nextCursor of the page before, for the next page (with the same "
                              "filters).")]

"""A fake server of OpenAI's Images API (as SGLang Diffusion, vLLM-Omni and OpenAI serve it): a
real HTTP server on 127.0.0.1, in a thread, usable from sync and async tests alike.

    with openai_images_server(models=["flux"]) as server:
        server.script([Error(429, "Rate limit reached", retry_after="1"), Pictures()])
        ...route with base_url=server.base_url, api_key=server.api_key, model="flux"...
        server.requests[0].fields      # {"model": "flux", "prompt": ..., "size": "1024x1024"}
        server.requests[0].files       # [("image", "reference-1.png", <PIL image>)] for edits

``openai_images_server(api_key=..., models=None, sizes=None, list_models=True, default=...)``
yields an ``ImagesServer``:

- ``base_url``, ``api_key``: what a route needs (``api_key`` None: no key asked for).
- ``script(steps)``: the answers to the next image requests, consumed in order (replaces what is
  left of an earlier script); when it is empty every request gets ``default``.
- ``requests``: every ``POST /v1/images/generations`` and ``/v1/images/edits`` received, as
  ``ImagesRequest`` (JSON body or form fields, and the files decoded to PIL), in arrival order,
  refused ones included.
- ``most_at_once``: the most image requests the server was answering at the same time.
- ``model_lists``: how many times ``GET /v1/models`` was answered. It lists ``models``; a server
  that serves any model (``models`` None) or is told ``list_models=False`` answers it 404, as a
  server without the listing does.
- ``downloads``: the paths of the pictures fetched from ``GET /v1/images/{id}/content``, with
  the Authorization header each came with.

Before a step is used, like a real server, it answers 401 (OpenAI's ``invalid_api_key``) for a
missing or wrong key, 404 ``model_not_found`` for a ``model`` it does not serve (``models``:
None serves any), 400 naming ``prompt`` for a missing prompt, ``size`` for a size outside
``sizes`` (None: any ``WxH``), and ``image`` for an edit without files. Steps:

    Pictures(size=None, color=..., url=None, count=None)  ``count`` pictures (None: the
        request's ``n``), at ``size`` or the size asked for; ``url``: None answers b64_json,
        "relative" a path on this server, "absolute" a full URL on it, "other-host" a URL
        naming it as ``localhost`` (another origin than the route's base URL, so the route
        treats it as the upstream's)
    Error(status, message, code=None, param=None, type=..., retry_after=None)  OpenAI's error
    Detail(status, detail)          FastAPI's error, ``{"detail": ...}`` (a string or a list)
    Raw(status, body, content_type="text/plain")  any bytes
    Hang(seconds, then=None)        wait (ends early when the server stops), then answer `then`
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from loopback import QuietHandler, serve_in_thread
from PIL import Image as PILImage

__all__ = ["Detail", "Error", "Hang", "ImagesRequest", "ImagesServer", "Pictures", "Raw",
           "Step", "openai_images_server"]

RGB = tuple[int, int, int]
_CONTENT = "/content"


@dataclass(frozen=True)
class Pictures:
    size: tuple[int, int] | None = None
    color: RGB = (40, 90, 200)
    url: str | None = None  # None, "relative", "absolute" or "other-host"
    count: int | None = None  # pictures in the answer; None: the n asked for


@dataclass(frozen=True)
class Error:
    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str = "invalid_request_error"
    retry_after: str | None = None


@dataclass(frozen=True)
class Detail:
    status: int
    detail: Any


@dataclass(frozen=True)
class Raw:
    status: int
    body: bytes
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Hang:
    seconds: float
    then: Step | None = None


Step = Pictures | Error | Detail | Raw | Hang


@dataclass
class ImagesRequest:
    endpoint: str  # "generations" or "edits"
    headers: dict[str, str]  # lower-case names
    fields: dict[str, Any]  # the JSON body, or the form fields (text)
    files: list[tuple[str, str, PILImage.Image]] = field(default_factory=list)
    refusal: str | None = None  # why the fake refused it before any step, if it did

    @property
    def size(self) -> str | None:
        return self.fields.get("size")


@dataclass
class ImagesServer:
    api_key: str | None
    models: frozenset[str] | None
    sizes: frozenset[str] | None
    list_models: bool
    default: Step
    base_url: str = ""
    requests: list[ImagesRequest] = field(default_factory=list)
    model_lists: int = 0
    downloads: list[tuple[str, str | None]] = field(default_factory=list)
    most_at_once: int = 0
    _at_once: int = 0
    _pictures: dict[str, bytes] = field(default_factory=dict)
    _steps: list[Step] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def script(self, steps: Sequence[Step]) -> None:
        """Answer the next image requests with ``steps``, in order, then with ``default``."""
        with self._lock:
            self._steps = list(steps)

    def _next_step(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else self.default

    def respond(self, request: ImagesRequest) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(request)
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
        try:
            refusal = _refusal(self, request)
            request.refusal = refusal.message if refusal else None
            step: Step = refusal or self._next_step()
            while isinstance(step, Hang):
                self._stopping.wait(step.seconds)
                step = step.then or self.default
            return self._answer(step, request)
        finally:
            with self._lock:
                self._at_once -= 1

    def _answer(self, step: Step, request: ImagesRequest) -> tuple[int, dict[str, str], bytes]:
        if isinstance(step, Error):
            return _error(step)
        if isinstance(step, Detail):
            return step.status, _JSON, json.dumps({"detail": step.detail}).encode()
        if isinstance(step, Raw):
            return step.status, {"Content-Type": step.content_type}, step.body
        assert isinstance(step, Pictures), step
        n = step.count if step.count is not None else int(request.fields.get("n", 1))
        size = step.size or _size(str(request.size or "1024x1024"))
        data = [self._item(_png(size, step.color), step.url) for _ in range(n)]
        return 200, _JSON, json.dumps({"created": 1764374400, "data": data}).encode()

    def _item(self, png: bytes, url: str | None) -> dict[str, Any]:
        if url is None:
            return {"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": None}
        picture_id = secrets.token_hex(8)
        with self._lock:
            self._pictures[picture_id] = png
        path = f"/v1/images/{picture_id}{_CONTENT}"
        if url == "relative":
            return {"url": path}
        if url == "other-host":
            return {"url": self.base_url.replace("127.0.0.1", "localhost") + path}
        return {"url": self.base_url + path}

    def picture(self, path: str, authorization: str | None) -> bytes | None:
        with self._lock:
            self.downloads.append((path, authorization))
            picture_id = path.removeprefix("/v1/images/").removesuffix(_CONTENT)
            return self._pictures.get(picture_id)

    def models_answer(self) -> dict[str, Any]:
        with self._lock:
            self.model_lists += 1
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                            "owned_by": "fake"}
                                           for m in sorted(self.models or ())]}


@contextmanager
def openai_images_server(*, api_key: str | None = "sk-fake-images-key-0123456789",
                         models: Sequence[str] | None = None,
                         sizes: Sequence[str] | None = None, list_models: bool = True,
                         default: Step | None = None) -> Iterator[ImagesServer]:
    state = ImagesServer(api_key, frozenset(models) if models is not None else None,
                         frozenset(sizes) if sizes is not None else None, list_models,
                         default or Pictures())
    with serve_in_thread(_handler(state), poll_s=0.02) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state._stopping.set()  # hanging answers end before the server shuts down


_JSON = {"Content-Type": "application/json"}


def _handler(state: ImagesServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            auth = self.headers.get("Authorization")
            if path == "/v1/models" and state.list_models and state.models is not None:
                if state.api_key is not None and auth != f"Bearer {state.api_key}":
                    self.send(*_error(_BAD_KEY))
                    return
                self.send(200, _JSON, json.dumps(state.models_answer()).encode())
                return
            picture = state.picture(path, auth) if path.endswith(_CONTENT) else None
            if picture is None:
                self.send(404, _JSON, json.dumps({"detail": "Not Found"}).encode())
            else:
                self.send(200, {"Content-Type": "image/png"}, picture)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path = urlsplit(self.path).path
            headers = {k.lower(): v for k, v in self.headers.items()}
            endpoint = path.removeprefix("/v1/images/")
            if endpoint not in ("generations", "edits"):
                self.send(404, _JSON, json.dumps({"detail": "Not Found"}).encode())
                return
            self.send(*state.respond(_parse(endpoint, headers, raw)))

    return Handler


# Reading requests -----------------------------------------------------------------------------


def _parse(endpoint: str, headers: dict[str, str], raw: bytes) -> ImagesRequest:
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields, files = _form(content_type, raw)
        return ImagesRequest(endpoint, headers, fields, files)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return ImagesRequest(endpoint, headers, body if isinstance(body, dict) else {})


def _form(content_type: str, raw: bytes,
          ) -> tuple[dict[str, Any], list[tuple[str, str, PILImage.Image]]]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    files: list[tuple[str, str, PILImage.Image]] = []
    for part in message.iter_parts() if isinstance(message, Message) else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        filename = part.get_filename()
        if filename is not None:
            image = PILImage.open(io.BytesIO(payload))
            image.load()
            files.append((str(name), filename, image))
        else:
            fields[str(name)] = payload.decode()
    return fields, files


_BAD_KEY = Error(401, "Incorrect API key provided.", code="invalid_api_key")


def _refusal(state: ImagesServer, request: ImagesRequest) -> Error | None:
    auth = request.headers.get("authorization")
    if state.api_key is not None and auth != f"Bearer {state.api_key}":
        return _BAD_KEY
    model = request.fields.get("model")
    if model is not None and state.models is not None and model not in state.models:
        return Error(404, f"The model `{model}` does not exist or you do not have access to "
                     "it.", code="model_not_found")
    if not request.fields.get("prompt"):
        return Error(400, "Missing required parameter: 'prompt'.", param="prompt",
                     code="missing_required_parameter")
    size = request.fields.get("size")
    if state.sizes is not None and size not in state.sizes:
        return Error(400, f"Invalid value: '{size}'. Supported values are: "
                     f"{', '.join(sorted(state.sizes))}.", param="size", code="invalid_value")
    if request.endpoint == "edits" and not request.files:
        return Error(400, "Missing required parameter: 'image'.", param="image",
                     code="missing_required_parameter")
    return None


# Answers --------------------------------------------------------------------------------------


def _error(step: Error) -> tuple[int, dict[str, str], bytes]:
    error = {"message": step.message, "type": step.type, "param": step.param,
             "code": step.code}
    headers = dict(_JSON)
    if step.retry_after is not None:
        headers["Retry-After"] = step.retry_after
    return step.status, headers, json.dumps({"error": error}).encode()


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def _png(size: tuple[int, int], color: RGB) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()

"""A fake APIXO: a real HTTP server on 127.0.0.1 speaking the task API of APIXO's Nano Banana 2
page (``shared/seed/nano-banana-2-api-page.txt``; docs/contract.md §1-5), scripted per test.

    with apixo_server() as apixo:
        apixo.script([Succeed(polls=2), Fail("CONTENT_VIOLATION")])
        ...  # talk to apixo.base_url with "Authorization: Bearer " + apixo.api_key
        apixo.submits       # JSON bodies of authorised submits (refused ones too), in order
        apixo.polls         # taskId -> status reads so far

What it checks, as APIXO does: the Bearer key (401), the model (404 when ``models`` is given and
the id is not in it), ``Content-Type: application/json`` (415) and the submit body (400 naming the
field, e.g. ``input.image_urls[0]`` for a non-http(s) URL). Every envelope is
``{"code", "message", "data"}``; errors carry ``data.error`` and ``data.field``.

Each submit that passes the checks takes the next scripted step, or ``default`` once the script
is used up:

    Succeed(polls=0, size=None, color=..., flaky_polls=0, redirects=0)
        ``polls`` reads answer processing, then success with ``resultJson`` a JSON *string*
        whose one URL serves real PNG/JPEG bytes (``output_format``) at ``size`` (default: the
        size table's size for the request). The first ``flaky_polls`` reads answer HTTP 503
        first; ``redirects`` puts that many 302 hops in front of the file.
    Fail(code="SensitiveContent", msg=..., polls=0)   processing, then failed with failCode/failMsg
    SubmitError(status, retry_after=None, message=None, field=None)
        the submit answers ``status`` (with ``Retry-After`` when given); no task is made
    Never()                                            processing forever
    ExpiringUrl(polls=0, status=404)                   success, but the result URL answers
                                                       ``status``
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import QuietHandler, serve_in_thread
from PIL import Image

from imagegate.contract import MODES, OUTPUT_FORMATS, RATIOS, RESOLUTIONS, output_size

__all__ = ["ApixoServer", "ExpiringUrl", "Fail", "Never", "Step", "SubmitError", "Succeed",
           "apixo_server"]

DEFAULT_KEY = "apixo-test-key-0123456789abcdef"


@dataclass(frozen=True)
class Succeed:
    polls: int = 0
    size: tuple[int, int] | None = None
    color: tuple[int, int, int] = (40, 120, 200)
    flaky_polls: int = 0
    redirects: int = 0


@dataclass(frozen=True)
class Fail:
    code: str = "SensitiveContent"
    msg: str = "Content violates safety policy, please adjust the prompt"
    polls: int = 0


@dataclass(frozen=True)
class SubmitError:
    status: int
    retry_after: float | None = None
    message: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class Never:
    pass


@dataclass(frozen=True)
class ExpiringUrl:
    polls: int = 0
    status: int = 404


Step = Succeed | Fail | SubmitError | Never | ExpiringUrl
_Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra headers


@dataclass
class _Task:
    id: str
    model: str
    step: Step
    body: dict[str, Any]
    created_ms: int
    reads: int = 0
    completed_ms: int | None = None


@dataclass
class ApixoServer:
    """State of one fake; read it from tests, change it only through ``script``."""

    api_key: str = DEFAULT_KEY
    models: frozenset[str] | None = None
    default: Step = field(default_factory=Succeed)
    base_url: str = ""
    submits: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # every /api/v1 request
    polls: dict[str, int] = field(default_factory=dict)
    task_ids: list[str] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)  # result paths fetched
    _steps: list[Step] = field(default_factory=list)
    _tasks: dict[str, _Task] = field(default_factory=dict)
    _files: dict[str, tuple[int, str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, steps: Sequence[Step]) -> None:
        """Replace the script: one step per submit that passes the checks, in order."""
        with self._lock:
            self._steps = list(steps)

    # Handlers (called with the lock held) ---------------------------------------------------

    def submit(self, model: str, body: dict[str, Any]) -> _Answer:
        step = self._steps.pop(0) if self._steps else self.default
        if isinstance(step, SubmitError):
            return _error(step.status, step.message or _REASONS.get(step.status, "Error"),
                          step.field, step.retry_after)
        task_id = "task_" + secrets.token_hex(16)
        self._tasks[task_id] = _Task(task_id, model, step, body, _now_ms())
        self.task_ids.append(task_id)
        self.polls[task_id] = 0
        return 200, _envelope({"taskId": task_id}), {}

    def status(self, model: str, task_id: str) -> _Answer:
        task = self._tasks.get(task_id)
        if task is None or task.model != model:
            return _error(404, "Task not found", "taskId")
        task.reads += 1
        self.polls[task_id] += 1
        step = task.step
        flaky = step.flaky_polls if isinstance(step, Succeed) else 0
        if task.reads <= flaky:
            return _error(503, "Service temporarily unavailable")
        data: dict[str, Any] = {"taskId": task.id, "state": "processing",
                                "createTime": task.created_ms}
        if isinstance(step, Never | SubmitError) or task.reads - flaky <= step.polls:
            return 200, _envelope(data), {}
        task.completed_ms = task.completed_ms or max(_now_ms(), task.created_ms + 1)
        data["completeTime"] = task.completed_ms
        if isinstance(step, Fail):
            data.update(state="failed", failCode=step.code, failMsg=step.msg)
        else:
            data.update(state="success", costTime=task.completed_ms - task.created_ms,
                        resultJson=json.dumps({"resultUrls": [self._result_url(task)]}))
        return 200, _envelope(data), {}

    def _result_url(self, task: _Task) -> str:
        inp, step = task.body["input"], task.step
        fmt = str(inp.get("output_format", "png")).lower()
        name = f"/files/{task.id}.{fmt}"
        if isinstance(step, ExpiringUrl):
            self._files[name] = (step.status, fmt, None)
        elif isinstance(step, Succeed):
            ratio = "1:1" if inp["aspect_ratio"] == "auto" else inp["aspect_ratio"]
            size = step.size or output_size(ratio, str(inp["resolution"]).lower())
            self._files[name] = (200, fmt, (size, step.color))
        redirects = step.redirects if isinstance(step, Succeed) else 0
        return self.base_url + (f"/redirect/{redirects}{name}" if redirects else name)

    def file(self, path: str) -> tuple[int, dict[str, str], Callable[[], bytes]]:
        """A result file (or a redirect hop); the body is rendered outside the lock."""
        if path.startswith("/redirect/"):
            _, _, hops, rest = path.split("/", 3)
            left = int(hops) - 1
            target = f"/redirect/{left}/{rest}" if left else f"/{rest}"
            return 302, {"Location": target}, lambda: b""
        self.downloads.append(path)
        status, fmt, spec = self._files.get(path, (404, "", None))
        if status != 200:
            return status, {"Content-Type": "text/plain"}, lambda: b"gone"
        size, color = spec
        ctype = "image/png" if fmt == "png" else "image/jpeg"
        return 200, {"Content-Type": ctype}, lambda: _picture(size, color, fmt)


# Body validation (docs/contract.md §4, as the seed page documents it) ----------------------------


class _Invalid(Exception):
    def __init__(self, error: str, field: str) -> None:
        super().__init__(error)
        self.error, self.field = error, field


def validate(body: Any) -> None:
    """Raise ``_Invalid(error, field)`` for the first rule ``body`` breaks."""
    if not isinstance(body, dict):
        raise _Invalid("body must be a JSON object", "")
    if body.get("request_type", "async") not in ("async", "callback"):
        raise _Invalid("request_type must be async or callback", "request_type")
    if body.get("request_type") == "callback" and not str(
            body.get("callback_url", "")).startswith("https://"):
        raise _Invalid("callback_url must be an https URL", "callback_url")
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise _Invalid("input is required", "input")
    _check(inp.get("mode") in MODES, "input.mode", "mode must be text-to-image or image-to-image")
    prompt = inp.get("prompt")
    _check(isinstance(prompt, str) and 1 <= len(prompt) <= 20000 and bool(prompt.strip()),
           "input.prompt", "prompt must be 1 to 20000 characters")
    _check_image_urls(inp)
    _check(inp.get("aspect_ratio") in ("auto", *RATIOS), "input.aspect_ratio",
           "aspect_ratio is not a supported ratio")
    _check(str(inp.get("resolution", "")).lower() in RESOLUTIONS, "input.resolution",
           "resolution must be 1k, 2k or 4k")
    _check(str(inp.get("output_format", "png")).lower() in OUTPUT_FORMATS, "input.output_format",
           "output_format must be png, jpeg or jpg")
    _check(isinstance(inp.get("google_search", False), bool), "input.google_search",
           "google_search must be true or false")


def _check_image_urls(inp: dict[str, Any]) -> None:
    urls = inp.get("image_urls")
    if inp.get("mode") == "text-to-image":
        _check(urls in (None, []), "input.image_urls", "image_urls must be empty for text-to-image")
        return
    if not isinstance(urls, list) or not 1 <= len(urls) <= 14:
        raise _Invalid("image_urls must hold 1 to 14 URLs for image-to-image", "input.image_urls")
    for index, url in enumerate(urls):
        _check(isinstance(url, str) and url.startswith(("http://", "https://")),
               f"input.image_urls[{index}]", "image_urls entries must be http(s) URLs")


def _check(ok: bool, field: str, error: str) -> None:
    if not ok:
        raise _Invalid(error, field)


# HTTP -----------------------------------------------------------------------------------------

_REASONS = {400: "Invalid request", 401: "Unauthorized", 402: "Insufficient balance",
            403: "Forbidden", 404: "Not found", 415: "Unsupported media type",
            429: "Too many requests", 500: "Internal server error", 502: "Bad gateway",
            503: "Service unavailable", 504: "Gateway timeout"}


def _envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def _error(status: int, error: str, field: str | None = None, retry_after: float | None = None,
           ) -> _Answer:
    data: dict[str, Any] = {"error": error}
    if field:
        data["field"] = field
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return status, {"code": status, "message": _REASONS.get(status, "Error"), "data": data}, headers


def _picture(size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG" if fmt == "png" else "JPEG", quality=95)
    return out.getvalue()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _handler(state: ApixoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if not url.path.startswith("/api/v1/"):
                with state._lock:
                    status, headers, render = state.file(url.path)
                self.send(status, headers, render())
                return
            with state._lock:
                answer = self._api_get(url.path, parse_qs(url.query))
            self._json(*answer)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with state._lock:
                answer = self._api_post(urlsplit(self.path).path, raw)
            self._json(*answer)

        def _authorised(self) -> _Answer | None:
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.headers.get("Authorization", "") != f"Bearer {state.api_key}":
                return _error(401, "missing or invalid API key")
            return None

        def _model(self, path: str, prefix: str) -> str | None:
            if not path.startswith(prefix):
                return None  # e.g. imagegate's /api/v1/streamTask/: APIXO has no such path
            model = path[len(prefix):]
            known = model and "/" not in model
            return model if known and (state.models is None or model in state.models) else None

        def _api_get(self, path: str, query: dict[str, list[str]],
                     ) -> _Answer:
            refused = self._authorised()
            if refused:
                return refused
            if path == "/api/v1/apikeys/current-balance":
                return 200, _envelope(100.0), {}
            model = self._model(path, "/api/v1/statusTask/")
            if model is None:
                return _error(404, "unknown model or path")
            task_id = query.get("taskId", [""])[0]
            if not task_id:
                return _error(400, "taskId is required", "taskId")
            return state.status(model, task_id)

        def _api_post(self, path: str, raw: bytes) -> _Answer:
            refused = self._authorised()
            if refused:
                return refused
            model = self._model(path, "/api/v1/generateTask/")
            if model is None:
                return _error(404, "unknown model or path")
            if "application/json" not in self.headers.get("Content-Type", ""):
                return _error(415, "Content-Type must be application/json")
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "body is not valid JSON")
            state.submits.append(body)
            try:
                validate(body)
            except _Invalid as exc:
                return _error(400, exc.error, exc.field)
            return state.submit(model, body)

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            self.send(status, {"Content-Type": "application/json", **headers},
                      json.dumps(body).encode())


    return Handler


@contextmanager
def apixo_server(*, api_key: str = DEFAULT_KEY, models: Sequence[str] | None = None,
                 default: Step | None = None) -> Iterator[ApixoServer]:
    """Start a fake APIXO on a free loopback port; stop it on exit.

    ``models``: the model ids it serves (None: any). ``default``: the step for submits beyond the
    script (``Succeed()`` unless given).
    """
    state = ApixoServer(api_key=api_key, models=None if models is None else frozenset(models),
                        default=default or Succeed())
    with serve_in_thread(_handler(state)) as base_url:
        state.base_url = base_url
        yield state

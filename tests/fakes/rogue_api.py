"""A task API on loopback that misbehaves as each test scripts it: answers that are not JSON,
proxies' HTML pages, event streams that carry garbage or never end, connections dropped
without an answer.

    with rogue_api({"generateTask": answer(200, envelope({"taskId": "t1"})),
                    "streamTask": [hang_up, events(done("t1"))]}) as api:
        api.base_url          # http://127.0.0.1:<port>
        api.requests          # (method, path with query, lower-case headers), in order

A route is the API call's name (the path segment after /api/v1/) and a handler, or a list of
handlers taken one per request, the last one repeating. A handler writes the whole answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], None]


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def task(task_id: str = "t1", state: str = "processing", **fields: Any) -> dict[str, Any]:
    return {"taskId": task_id, "state": state, "createTime": 1_700_000_000_000, **fields}


def answer(status: int, body: Any, content_type: str = "application/json",
           headers: Sequence[tuple[str, str]] = ()) -> Handler:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(raw)))
        for name, value in headers:
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(raw)

    return handle


def hang_up(h: BaseHTTPRequestHandler) -> None:
    """Close the connection without answering, as a server killed mid-request does."""
    h.close_connection = True
    h.wfile.flush()
    h.connection.close()


def sse(event: str, data: Any, id_: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"id: {id_}\n" if id_ else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


def done(task_id: str = "t1", state: str = "success", **fields: Any) -> bytes:
    return sse("done", envelope(task(task_id, state, **fields)), "9")


def events(*chunks: bytes, keep_alive: int = 0, every: float = 0.05,
           opening: bytes = b"") -> Handler:
    """An event stream: ``opening``, ``keep_alive`` comments ``every`` s apart, then
    ``chunks``, then its end."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        h.close_connection = True
        try:
            h.wfile.write(opening)
            h.wfile.flush()
            for _ in range(keep_alive):
                h.wfile.write(b": keep-alive\n\n")
                h.wfile.flush()
                time.sleep(every)
            for chunk in chunks:
                h.wfile.write(chunk)
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    return handle


@dataclass
class RogueApi:
    routes: dict[str, Handler | list[Handler]]
    base_url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _served: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, name: str) -> int:
        return sum(1 for _, path, _ in self.requests if _call_name(path) == name)

    def handler_for(self, name: str) -> Handler | None:
        route = self.routes.get(name)
        if route is None or callable(route):
            return route
        with self._lock:
            n = self._served.get(name, 0)
            self._served[name] = n + 1
        return route[min(n, len(route) - 1)]


def _call_name(path: str) -> str:
    parts = path.split("?")[0].split("/")
    return parts[3] if len(parts) > 3 and parts[1:3] == ["api", "v1"] else path


def _handler(api: RogueApi) -> type[BaseHTTPRequestHandler]:
    class Handle(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = self.headers.get("Content-Length")
            if length:
                self.rfile.read(int(length))
            api.requests.append((self.command, self.path,
                                 {k.lower(): v for k, v in self.headers.items()}))
            handler = api.handler_for(_call_name(self.path))
            if handler is None:
                handler = answer(404, {"code": 404, "message": "not found",
                                       "data": {"error": "not found"}})
            handler(self)

    return Handle


@contextmanager
def rogue_api(routes: dict[str, Handler | list[Handler]]) -> Iterator[RogueApi]:
    api = RogueApi(routes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

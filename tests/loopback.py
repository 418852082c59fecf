"""Real HTTP servers on loopback for tests: reference images to fetch, and a callback receiver
whose answers each test scripts."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def png_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Loopback:
    """``files``: path -> (status, content type, body). ``answer``: called for each POST, returns
    (status, extra headers, delay seconds)."""

    base_url: str = ""
    files: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, dict[str, str], float]] = (
        lambda r: (200, {}, 0.0))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)


def _handler(state: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            status, ctype, body = state.files.get(self.path, (404, "text/plain", b"missing"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                           self.rfile.read(length), time.time())
            state.received.append(got)
            status, headers, delay = state.answer(got)
            time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with ``send``; the fakes build on it."""

    def log_message(self, *args: object) -> None:
        pass

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """Answer with ``body``; a client that already gave up (a timeout test) is ignored."""
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def serve_in_thread(handler: type[BaseHTTPRequestHandler], port: int = 0,
                    poll_s: float = 0.05) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (``port`` 0: any free one) from a thread; yields the base
    URL and stops the server on exit. Shared by every loopback server of the tests."""
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(poll_s,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def loopback_server(port: int = 0, state: Loopback | None = None) -> Iterator[Loopback]:
    """A server on 127.0.0.1 (``port`` 0: any free one). Pass ``state`` to keep what an
    earlier server on the same port received and answered."""
    state = state or Loopback()
    with serve_in_thread(_handler(state), port) as base_url:
        state.base_url = base_url
        yield state

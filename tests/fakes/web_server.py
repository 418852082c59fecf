"""A web server on 127.0.0.1 for guarded downloads: files, redirects, and bodies that misbehave.

    with web_server({"/good.png": (png, "image/png")}) as web:
        web.url("/good.png")                      # http://127.0.0.1:<port>/good.png
        web.url("/good.png", "cdn.example.test")  # the same server under a name
        web.hosts_seen                            # the Host header of every GET, in order

Paths it answers besides ``files`` (anything else is 404):

    /redirect/N        302 to /redirect/N-1, and /redirect/0 to /good.png (N+1 hops in all)
    REDIRECTS's paths  302 to where REDIRECTS says ({port} is this server's port; /no-location
                       sends an empty Location)
    /big-chunked       1 MB, chunked, no Content-Length
    /trickle           100 bytes, one every 0.05 s
    /slowish.png       /good.png after 0.15 s; ``max_in_flight`` counts how many overlap
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from imagegate.net.netguard import IPAddress, Resolver, is_public_address

KB = 1024

REDIRECTS = {
    "/a/relative": "../good.png",
    "/to-private": "http://10.0.0.1/x.png",
    "/to-metadata": "http://169.254.169.254/latest/meta-data/",
    "/to-file": "file:///etc/passwd",
    "/to-named": "http://images.example.test:{port}/good.png",
    "/to-missing": "/nothing-here",
    "/to-credentials": "http://user:secret@127.0.0.1:{port}/nothing-here",
    "/no-location": "",
}


@dataclass
class WebServer:
    port: int
    files: dict[str, tuple[bytes, str]]
    hosts_seen: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.hosts_seen.append(self.headers.get("Host", ""))
        path = self.path.split("?")[0]
        if path in state.files:
            self._send(200, *state.files[path])
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self._redirect("/good.png" if left == 0 else f"/redirect/{left - 1}")
        elif path in REDIRECTS:
            self._redirect(REDIRECTS[path].format(port=state.port))
        elif path == "/big-chunked":
            self._chunked(bytes(16 * KB) for _ in range(64))
        elif path == "/trickle":
            self._chunked(self._slowly(b"x", 100, 0.05))
        elif path == "/slowish.png":
            self._slowish()
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def _chunked(self, chunks: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _slowly(piece: bytes, count: int, delay: float) -> Iterator[bytes]:
        for _ in range(count):
            time.sleep(delay)
            yield piece

    def _slowish(self) -> None:
        state = self.server.state
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        time.sleep(0.15)
        with state.lock:
            state.in_flight -= 1
        self._send(200, *state.files["/good.png"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: WebServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (size limits, timeouts); that is not a server bug


@contextmanager
def web_server(files: dict[str, tuple[bytes, str]]) -> Iterator[WebServer]:
    """Serve ``files`` (path -> body, content type) and the paths above until the block ends."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = WebServer(port=httpd.server_address[1], files=files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def fake_resolver(table: dict[str, list[str]]) -> Resolver:
    """A resolver that knows only ``table`` (host -> addresses); any other host fails."""
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]
    return resolve


def loopback_counts_as_public(ip: IPAddress) -> bool:
    """Test policy: the loopback server stands in for the public internet."""
    return ip.is_loopback or is_public_address(ip)

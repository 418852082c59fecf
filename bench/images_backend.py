"""Not a benchmark: the fake OpenAI Images server ``bench_gateway.py`` puts behind both gateways.
A raw asyncio HTTP/1.1 server (keep-alive, ``Content-Length`` bodies) that answers at once, so
the gateways, not the backend, are what is measured.

    python bench/images_backend.py --port PORT --png FILE [--model MODEL]

- ``POST /v1/images/generations``: ``{"created": ..., "data": [{"b64_json": <FILE>}]}``,
  the same pre-encoded picture every time, whatever the body asked (it is read, not parsed);
- ``GET /v1/models``: a list naming ``--model``;
- ``GET /stats``: ``{"generations": N, "connections": M}``, the generations answered and the
  connections accepted so far (the bench checks that every gateway call reached the backend,
  none answered from a cache, and reports how many connections each gateway opened).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import time
from pathlib import Path

_MAX_HEAD = 64 * 1024


def response(status: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


class Backend(asyncio.Protocol):
    """One connection: requests parsed from the bytes as they arrive, answered in order."""

    generations = 0
    connections = 0
    generation_answer = b""
    models_answer = b""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        Backend.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self._one():
            pass

    def _one(self) -> bool:
        """Answer the first complete request in the buffer; False when there is none yet."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self._close(response("431 Request Header Fields Too Large", b"{}"))
            return False
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        if "chunked" in headers.get("transfer-encoding", ""):
            self._close(response("411 Length Required", b'{"error": "send Content-Length"}'))
            return False
        length = int(headers.get("content-length", "0").strip() or 0)
        if len(self.buffer) < end + 4 + length:
            return False
        del self.buffer[: end + 4 + length]
        assert self.transport is not None
        self.transport.write(self._answer(method, target.split("?")[0]))
        if headers.get("connection", "").strip() == "close":
            self._close(b"")
            return False
        return True

    def _answer(self, method: str, path: str) -> bytes:
        if method == "POST" and path == "/v1/images/generations":
            Backend.generations += 1
            return self.generation_answer
        if method == "GET" and path == "/v1/models":
            return self.models_answer
        if method == "GET" and path == "/stats":
            return response("200 OK", json.dumps({"generations": Backend.generations,
                                                      "connections": Backend.connections}).encode())
        return response("404 Not Found", b'{"error": {"message": "not found"}}')

    def _close(self, last: bytes) -> None:
        if self.transport is not None:
            if last:
                self.transport.write(last)
            self.transport.close()
            self.transport = None


async def serve(port: int, png: bytes, model: str) -> None:
    answer = {"created": int(time.time()),
              "data": [{"b64_json": base64.b64encode(png).decode("ascii")}]}
    Backend.generation_answer = response("200 OK", json.dumps(answer).encode())
    Backend.models_answer = response("200 OK", json.dumps(
        {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "bench"}]},
    ).encode())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--png", type=Path, required=True)
    parser.add_argument("--model", default="bench-image")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.png.read_bytes(), args.model))


if __name__ == "__main__":
    main()

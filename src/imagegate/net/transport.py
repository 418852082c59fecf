"""The service's outbound HTTP transport: httpx's own, with a cheaper check of pooled connections.

On every request, and every response closed, httpcore asks each pooled connection whether its
server has closed it while idle (``has_expired``), through anyio's ``extra`` attributes: a dict
of lookups built anew and a ``getpeername`` system call, per connection, each time. A worker
running dozens of tasks against one serving engine keeps dozens of connections, and that scan
cost more of the event loop than the rest of each upstream request
(``bench/bench_gateway.py``). The streams made here remember their socket, so the check is one
``poll`` of it, as httpcore itself does once it has the socket.

httpx takes no network backend, so ``outbound_transport`` sets it on the transport's pool after
building it; where a later httpx or httpcore lays its pool out otherwise, the transport is
httpx's as it comes (correct, only slower).
"""

# httpcore's stream and backend interfaces take their timeouts as parameters.
# ruff: noqa: ASYNC109

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["outbound_transport"]

SocketOption = (tuple[int, int, int] | tuple[int, int, bytes | bytearray]
                | tuple[int, int, None, int])  # httpcore's SOCKET_OPTION


def outbound_transport() -> httpx.AsyncHTTPTransport:
    """httpx's transport with its defaults (as ``httpx.AsyncClient`` builds it without proxies
    from the environment), whose connections are checked by ``poll``."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = PollingBackend(backend)  # type: ignore[union-attr]
    return transport


class PollingBackend(httpcore.AsyncNetworkBackend):
    """``backend``'s connections, each one's socket remembered for the idle check."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return PollingStream(await self._backend.connect_tcp(
            host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return PollingStream(await self._backend.connect_unix_socket(path, timeout,
                                                                     socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PollingStream(httpcore.AsyncNetworkStream):
    """``stream``, answering ``is_readable`` (has the peer sent or closed anything?) by one
    ``poll`` of its socket, looked up once."""

    def __init__(self, stream: httpcore.AsyncNetworkStream,
                 sock: socket.socket | None = None) -> None:
        self._stream = stream
        self._socket: socket.socket | None = sock or stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return PollingStream(tls, self._socket)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return readable(self._socket)
        return self._stream.get_extra_info(info)


def readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read, or its peer has closed it (a closed socket is
    "readable": so is a broken one)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))

"""The outbound transport (net/transport.py) against raw HTTP/1.1 servers on loopback: pooled
connections are reused while their server keeps them, and one the server closed while it was
idle is noticed by the cheaper check and replaced, never used."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from imagegate.net.transport import PollingStream, outbound_transport, readable

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class Served:
    base_url: str = ""
    connections: int = 0
    requests: int = 0


@asynccontextmanager
async def http_server(close_after_answer: bool) -> AsyncIterator[Served]:
    """Answers each GET with "ok" and keeps the connection (no ``Connection: close`` header
    either way), or closes it right after each answer when ``close_after_answer``, as a
    server whose idle timeout is shorter than the client's would."""
    served = Served()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                served.requests += 1
                writer.write(ANSWER)
                await writer.drain()
                if close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    served.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield served


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=outbound_transport(), trust_env=False, timeout=5)


def test_connections_are_reused_while_the_server_keeps_them() -> None:
    async def go() -> Served:
        async with http_server(close_after_answer=False) as served, client() as c:
            for _ in range(5):
                assert (await c.get(served.base_url + "/x")).text == "ok"
            together = await asyncio.gather(*(c.get(served.base_url + "/y")
                                              for _ in range(30)))
            assert all(r.text == "ok" for r in together)
            for _ in range(5):
                assert (await c.get(served.base_url + "/z")).text == "ok"
            return served
    served = asyncio.run(go())
    assert served.requests == 40
    assert served.connections <= 30  # the sequential calls all went on pooled connections


def test_a_connection_the_server_closed_while_idle_is_replaced_not_used() -> None:
    async def go() -> Served:
        async with http_server(close_after_answer=True) as served, client() as c:
            for _ in range(6):
                assert (await c.get(served.base_url + "/x")).text == "ok"
                await asyncio.sleep(0.05)  # the server's close reaches the idle connection
            return served
    served = asyncio.run(go())
    assert (served.requests, served.connections) == (6, 6)


def test_the_transport_checks_its_connections_by_polling_their_socket() -> None:
    async def go() -> list[object]:
        async with http_server(close_after_answer=False) as served, client() as c:
            response = await c.get(served.base_url + "/x")
            return [response.extensions["network_stream"]]
    [stream] = asyncio.run(go())
    assert isinstance(stream, PollingStream)


def test_a_socket_is_readable_once_its_peer_sends_or_closes() -> None:
    mine, peer = socket.socketpair()
    with mine, peer:
        assert not readable(mine)
        peer.send(b"x")
        assert readable(mine)
        mine.recv(1)
        assert not readable(mine)
        peer.close()
        assert readable(mine)
    assert readable(mine)  # closed here too: nothing to wait for

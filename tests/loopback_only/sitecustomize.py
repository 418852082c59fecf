"""A fence for processes under fuzzing: a Python process started with this folder on PYTHONPATH
may resolve and connect to loopback addresses only.

A fuzzer sends the server any URL the schema allows (reference images, callbacks, test events),
and the server would try to reach each one. Outside loopback there is nothing of ours to reach,
so such attempts are refused here, inside the process, as an unreachable host would be: name
lookups fail and connections are refused. Unix sockets are not affected.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", ""})
_INET = (socket.AF_INET, socket.AF_INET6)


def _is_loopback(host: object) -> bool:
    if host is None:
        return True  # a passive lookup, for binding
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


_getaddrinfo = socket.getaddrinfo
_gethostbyname = socket.gethostbyname
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _refuse_lookup(host: object) -> None:
    if not _is_loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r}: only loopback is reachable here")


def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _refuse_lookup(host)
    return _getaddrinfo(host, *args, **kwargs)


def gethostbyname(host: Any) -> str:
    _refuse_lookup(host)
    return _gethostbyname(host)


def _refuse_connect(sock: socket.socket, address: Any) -> None:
    if sock.family in _INET and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"{address[0]!r}: only loopback is reachable here")


def connect(self: socket.socket, address: Any) -> None:
    _refuse_connect(self, address)
    _connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    _refuse_connect(self, address)
    return _connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.gethostbyname = gethostbyname
socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]

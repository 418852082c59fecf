"""Starting processes: the all-in-one server (``imagegate serve``) and the API alone (``imagegate
api``) under the ASGI server, and the loops of ``imagegate worker`` and ``imagegate sweeper``,
which stop on SIGTERM or SIGINT: running attempts get ``worker_shutdown_grace_seconds`` to
finish, then they are cancelled and their tasks handed back to the queue. The loops serve their
metrics on ``metrics_port`` when it is set (the API serves them on its own port).

``serve`` keeps one server per data directory and per port, creates the first start's demo
key, and names the safety switches that are off.

Two servers on one port would share it (the ASGI server binds with SO_REUSEPORT) and answer
alternate requests with different keys; two on one data directory would run two sets of workers
and sweepers over one SQLite database. Both are refused before anything is served: the port by
binding it once without SO_REUSEPORT, the data directory by an exclusive lock on
``DATA_DIR/imagegate.lock`` held for the server's life (the kernel drops it when the process
ends, kill -9 included). ``lock_data_dir = false`` lifts the second check for an operator who
runs several processes on one database on purpose.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from imagegate import accounts
from imagegate.bootstrap import build_runtime, open_seams, prepare_database, scrape_of
from imagegate.clock import SystemClock
from imagegate.config import ENV_PREFIX, Settings
from imagegate.errors import RequestError
from imagegate.logs import granian_logging
from imagegate.metrics_listener import serve_metrics
from imagegate.money import format_usd, usd_to_micros
from imagegate.store.base import Store

__all__ = ["check_port_free", "first_start", "lock_data_dir", "run", "run_loops",
           "safety_notes"]

LOCK_FILE = "imagegate.lock"


SERVE_APP = "imagegate.api.app:create_app_from_env"
API_APP = "imagegate.api.app:create_api_app_from_env"


def run(settings: Settings, config_file: str | None, app: str = SERVE_APP) -> None:
    """Serve ``app`` until stopped (the data directory and port already checked)."""
    from granian import Granian
    from granian.constants import Interfaces

    if settings.s3_bucket:  # missing credentials stop the start here, not in the server
        from imagegate.blobs.credentials import find_credentials

        find_credentials(settings.s3_access_key_id, settings.s3_secret_access_key)
    _export(settings, config_file)
    what = "API" if app == API_APP else "serving"
    print(f"imagegate {what} on {settings.base_url} (data in {settings.data_dir})", flush=True)
    for note in safety_notes(settings):
        print(f"note: {note}", file=sys.stderr, flush=True)
    Granian(app, address=settings.host, port=settings.port, interface=Interfaces.ASGI,
            factory=True, workers=1,
            log_level=settings.log_level.lower(),  # type: ignore[arg-type]
            log_dictconfig=granian_logging(settings.log_format)).serve()


async def run_loops(settings: Settings, name: str, **kinds: Any) -> None:
    """Run the runtime ``build_runtime(**kinds)`` makes until SIGTERM or SIGINT (or a loop
    fails), then stop it within the grace period."""
    seams = open_seams(settings)
    listener: asyncio.Server | None = None
    try:
        runtime = build_runtime(seams, **kinds)
        await prepare_database(seams.store, upgrade=False)
        await seams.start()
        if settings.metrics_port:
            listener = await serve_metrics(settings.host, settings.metrics_port,
                                           scrape_of(seams).page)
            print(f"imagegate {name} metrics on http://{settings.host}:{settings.metrics_port}"
                  "/metrics", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runtime.start()
        print(f"imagegate {name} running ({', '.join(runtime.loops)}); data in "
              f"{settings.data_dir}", flush=True)
        stopped = asyncio.create_task(stop.wait())
        ended = asyncio.create_task(runtime.wait())
        await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        print(f"imagegate {name} stopping", flush=True)
        await runtime.stop(settings.worker_shutdown_grace_seconds)
        for waiter in (stopped, ended):
            waiter.cancel()
    finally:
        if listener is not None:
            listener.close()
        await seams.close()


def lock_data_dir(data_dir: Path) -> int:
    """Take the data directory's lock (creating the directory); the open descriptor holds it.
    Raises ``RequestError`` naming the directory (and the holder's pid) when it is taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RequestError(f"another imagegate server (pid {holder}) is already serving data "
                           f"dir {data_dir}; stop it or use another --data-dir (several "
                           "processes on one database need lock_data_dir = false)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def check_port_free(host: str, port: int) -> None:
    """Raise ``RequestError`` when something already listens on ``host``:``port``."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise RequestError(f"cannot listen on {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RequestError(f"port {port} on {host} is already in use (another imagegate "
                                   "server, or another program); stop it or choose another "
                                   "--port") from None
            raise RequestError(f"cannot listen on {host} port {port}: {exc.strerror}") from None


def safety_notes(settings: Settings) -> list[str]:
    """One line for each safety switch that is off, and for a public address without a URL."""
    notes = []
    if settings.allow_private_networks:
        notes.append("allow_private_networks is on: reference images, relay results and "
                     "callbacks may reach loopback and private addresses")
    if settings.allow_http_callbacks:
        notes.append("allow_http_callbacks is on: callbacks may go to plain-http URLs")
    if settings.host in ("0.0.0.0", "::") and not settings.public_url:
        notes.append("result and callback URLs use http://127.0.0.1; set IMAGEGATE_PUBLIC_URL "
                     "to the address clients reach this server at")
    return notes


async def first_start(store: Store, settings: Settings) -> None:
    """On an empty data dir: a demo account and key, and a curl command to paste."""
    if await store.count_accounts():
        return
    new = await accounts.create_key(store, SystemClock(), name="demo",
                                    credit_micros=usd_to_micros(settings.demo_credit_usd))
    body = json.dumps({"request_type": "async", "input": {
        "mode": "text-to-image", "prompt": "a lighthouse on a cliff at dawn, watercolor",
        "aspect_ratio": "16:9", "resolution": "1k"}})
    print(f"\nFirst start: created a demo API key with {format_usd(new.account.balance_micros)}"
          f" of credit. It is shown only this once:\n\n    {new.plain}\n\n"
          "Try it (it answers with the finished task; resultJson holds the image's URL):\n\n"
          f"    curl -s -X POST {settings.base_url}/api/v1/generateTask/nano-banana-2 \\\n"
          f"      -H 'Authorization: Bearer {new.plain}' \\\n"
          f"      -H 'Content-Type: application/json' -H 'Prefer: wait=30' \\\n"
          f"      -d {shlex.quote(body)}\n\n"
          f"or open {settings.base_url}/ in a browser (the playground) and enter the key.\n",
          flush=True)


def _export(settings: Settings, config_file: str | None) -> None:
    """Hand the command-line choices to the server process, which reads IMAGEGATE_*."""
    os.environ[ENV_PREFIX + "DATA_DIR"] = settings.data_dir
    os.environ[ENV_PREFIX + "HOST"] = settings.host
    os.environ[ENV_PREFIX + "PORT"] = str(settings.port)
    if config_file:
        os.environ[ENV_PREFIX + "CONFIG"] = os.path.abspath(config_file)

"""The floor for bench_api.py: one Starlette route answering ``{"ok": true}``, served by granian
exactly as ``imagegate serve`` serves imagegate (ASGI interface, one worker, an app factory).

Run: ``.venv/bin/python bench/bare_app.py --port 8001``. ``/ok`` takes GET and POST and never
reads the body, so what it measures is granian + Starlette routing + JSON rendering, nothing else:
the floor the issue's ratios are computed against. ``/json`` (POST) also reads the request body
and parses it as JSON (``await request.json()``), as any endpoint that takes a JSON body must:
context for the submit ratio, not a target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def read_json(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"ok": isinstance(body, dict)})


def create_app() -> Starlette:
    return Starlette(routes=[Route("/ok", ok, methods=["GET", "POST"]),
                             Route("/json", read_json, methods=["POST"])])


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # The worker process imports the target by name, so this directory must be importable.
    sys.path.insert(0, str(Path(__file__).parent))
    print(f"bare app serving on http://{args.host}:{args.port}/ok", flush=True)
    Granian("bare_app:create_app", address=args.host, port=args.port,
            interface=Interfaces.ASGI, factory=True, workers=1,
            log_level="warning").serve()  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

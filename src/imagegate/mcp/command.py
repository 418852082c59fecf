"""``imagegate mcp``: its arguments, registered on ``imagegate``'s parser by cli.py, and the
command. The ``mcp`` SDK is an optional extra (``pip install 'imagegate[mcp]'``): it is imported
only when the command runs, and its absence is said in one line naming that command.

Exit statuses: 0 when the client hangs up (stdio) or on SIGINT/SIGTERM (HTTP), 1 when the
``mcp`` extra is not installed, 2 for a bad or missing argument (no base URL or key), 130 when
interrupted on stdio.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from imagegate_client.core import DEFAULT_MODEL

from imagegate.client_cli.parser import seconds

INSTALL = "pip install 'imagegate[mcp]'"
WAIT_TIMEOUT_S = 900.0


def register_mcp(sub: Any) -> None:
    """``imagegate mcp`` on the top-level subparsers ``sub``."""
    cmd = sub.add_parser(
        "mcp", help="serve the task API's tools to AI assistants over the Model Context "
        "Protocol (asks a service by URL: --base-url, --api-key)",
        description="A Model Context Protocol server, on stdio (the default) or on streamable "
        "HTTP at http://HOST:PORT/mcp (--http PORT), with the tools generate_image, edit_image, "
        "get_task, list_tasks, cancel_task, get_balance and list_models, over any imagegate or "
        "APIXO-compatible service. See docs/mcp.md.", epilog=f"Needs the mcp extra: {INSTALL}")
    cmd.add_argument("--base-url", metavar="URL", help="the service, e.g. "
                     "http://127.0.0.1:8000 (default: $IMAGEGATE_BASE_URL)")
    cmd.add_argument("--api-key", metavar="KEY", help="the API key (default: "
                     "$IMAGEGATE_API_KEY)")
    cmd.add_argument("--model", default=os.environ.get("IMAGEGATE_MODEL") or DEFAULT_MODEL,
                     help=f"the tools' model when a call names none (default: "
                     f"$IMAGEGATE_MODEL or {DEFAULT_MODEL})")
    cmd.add_argument("--http", type=_port, metavar="PORT", help="serve streamable HTTP on "
                     "this port, at /mcp, instead of stdio")
    cmd.add_argument("--host", default="127.0.0.1", help="with --http: the listen address "
                     "(default 127.0.0.1; anyone who reaches it uses the API key)")
    cmd.add_argument("--wait-timeout", type=seconds, default=WAIT_TIMEOUT_S,
                     metavar="SECONDS", help="how long generate_image and edit_image wait "
                     "for a task before answering that it goes on (default "
                     f"{WAIT_TIMEOUT_S:g})")
    cmd.add_argument("--poll-interval", type=seconds, metavar="SECONDS", help="when the "
                     "service cannot stream progress: seconds between status reads (default: "
                     "the API's advice, 10)")
    cmd.add_argument("--no-inline-images", action="store_true", help="answer a generation's "
                     "URLs without the images themselves (smaller results)")
    cmd.set_defaults(run=cmd_mcp, client=True)


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        import anyio

        from imagegate.mcp.server import Listen, serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("mcp", "mcp_types", "anyio", "pydantic"):
            raise
        print(f"imagegate: imagegate mcp needs the Model Context Protocol SDK, which is not "
              f"installed ({exc.name}): {INSTALL}", file=sys.stderr)
        return 1
    from imagegate_client import AsyncClient

    extra: dict[str, Any] = {}
    if args.poll_interval is not None:
        extra["poll_interval"] = args.poll_interval
    try:
        client = AsyncClient(args.base_url, args.api_key, model=args.model, **extra)
    except ValueError as exc:
        message = str(exc).replace("base_url", "--base-url").replace("api_key", "--api-key")
        print(f"imagegate: {message}", file=sys.stderr)
        return 2
    listen = None if args.http is None else Listen(args.host, args.http)
    if listen is not None:
        print(f"imagegate mcp: streamable HTTP on http://{listen.host}:{listen.port}/mcp, "
              f"for {client.base_url}", file=sys.stderr, flush=True)
    try:
        anyio.run(lambda: serve(client, wait_timeout=args.wait_timeout,
                                inline_images=not args.no_inline_images, listen=listen))
    except KeyboardInterrupt:
        return 130
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return int(text)

"""The arguments of the client commands, registered on ``imagegate``'s parser by cli.py."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from imagegate_client.core import DEFAULT_MODEL

from imagegate.client_cli import commands
from imagegate.client_cli.outputs import FORMATS

BY_URL = "(asks a service by URL: --base-url, --api-key)"
EXIT_STATUSES = """exit status: 0 ok, 1 task failed, 2 usage or invalid request,
3 authentication or permission, 4 insufficient balance, 5 rate limited,
6 server or connection error, 7 timed out waiting (--timeout),
130 interrupted (the task id is printed), 141 stdout closed early.
See docs/cli.md."""


class CommandParser(argparse.ArgumentParser):
    """``imagegate``'s parser: its subcommands' parsers are of this class too, and a refused
    argument raises ArgumentsRefused (exit status 2, the message on stderr as argparse says
    it) so that ``parse`` can answer a client command's --json with a JSON error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        text = f"{self.prog}: error: {message}"
        print(text, file=sys.stderr)
        raise ArgumentsRefused(text)


class ArgumentsRefused(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; when it refuses an argument of a client command given
    --json, stdout also gets the JSON error object the command prints for its other errors."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        return parser.parse_args(words)
    except ArgumentsRefused as exc:
        if "--json" in words and _client_command(words):
            print(json.dumps({"error": {"message": exc.message, "exitCode": 2,
                                        "status": None, "field": None}}), flush=True)
        raise


def _client_command(words: list[str]) -> bool:
    """Whether ``words`` name a client command (generate, tasks list, tasks cancel)."""
    names = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--data-dir", "--config"):
            skip = True
        elif not word.startswith("-"):
            names.append(word)
            if len(names) == 2:
                break
    return names[:1] == ["generate"] or names in (["tasks", "list"], ["tasks", "cancel"])


def connection_options(*, model_filter: bool = False) -> argparse.ArgumentParser:
    """--base-url, --api-key, --model and --json, shared by every client command; with
    ``model_filter`` --model only filters, and defaults to none."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", metavar="URL", help="the service, e.g. "
                        "http://127.0.0.1:8000 (default: $IMAGEGATE_BASE_URL)")
    common.add_argument("--api-key", metavar="KEY", help="the API key (default: "
                        "$IMAGEGATE_API_KEY)")
    if model_filter:
        common.add_argument("--model", help="only tasks of this model (default: every model)")
    else:
        common.add_argument("--model", default=os.environ.get("IMAGEGATE_MODEL") or
                            DEFAULT_MODEL, help="model id (default: $IMAGEGATE_MODEL or "
                            f"{DEFAULT_MODEL})")
    common.add_argument("--json", action="store_true", help="print JSON for programs")
    common.set_defaults(client=True)
    return common


def register_generate(sub: Any) -> None:
    """``imagegate generate`` on the top-level subparsers ``sub``."""
    gen = sub.add_parser("generate", parents=[connection_options()],
                         help=f"generate images and save them {BY_URL}",
                         description="Submit a task, show its progress, download its images "
                         "and print where they were saved (one path a line). Progress goes to "
                         "stderr: one redrawn line on a terminal, plain lines elsewhere.",
                         epilog=EXIT_STATUSES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("prompt", help="what to draw")
    gen.add_argument("--image", action="append", default=[], metavar="PATH_OR_URL",
                     help="a reference image (image-to-image): an http(s) URL, a data: URI or "
                     "a local file, sent as a data URI; repeat for several")
    gen.add_argument("--ratio", default="auto", help="aspect ratio, e.g. 16:9 (default auto)")
    gen.add_argument("--resolution", default="1k", help="1k, 2k or 4k (default 1k)")
    gen.add_argument("--format", choices=FORMATS, type=str.lower, help="png, jpeg or jpg "
                     "(default: the extension of -o, else png)")
    gen.add_argument("-n", "--num-images", type=_count, metavar="N", help="images to make "
                     "(each is billed; default: the service's, 1)")
    gen.add_argument("-o", "--output", metavar="OUT", help="a file, or a directory (an "
                     "existing one, or a path ending in /); several images are numbered "
                     "(default: TASKID.EXT in the current directory)")
    gen.add_argument("--google-search", action="store_true", help="ground the image on Google "
                     "Search")
    gen.add_argument("--seed", type=_whole, help="a seed, for routes that can reproduce an image")
    gen.add_argument("--timeout", type=seconds, metavar="SECONDS", help="stop waiting after "
                     "this long (exit 7; the task goes on; default: wait until it ends)")
    gen.add_argument("--poll-interval", type=seconds, metavar="SECONDS", help="when the "
                     "service cannot stream progress: seconds between status reads (default: "
                     "the API's advice, 10)")
    gen.add_argument("--no-wait", action="store_true", help="submit, print the task id and "
                     "exit")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    gen.set_defaults(run=commands.cmd_generate)


def register_tasks(actions: Any) -> None:
    """``tasks list`` and ``tasks cancel`` beside the operator's ``tasks show``."""
    listing = actions.add_parser("list", parents=[connection_options(model_filter=True)],
                                 help=f"your key's tasks, newest first {BY_URL}",
                                 epilog=EXIT_STATUSES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.add_argument("--state", action="append", choices=("processing", "success",
                         "failed"), help="only tasks in this state (repeat for several)")
    listing.add_argument("--limit", type=_count, default=commands.LIST_LIMIT, metavar="N",
                         help="tasks to show (default 20, at most 100); with --all, per request")
    listing.add_argument("--cursor", help="start after the page this cursor ended (as printed)")
    listing.add_argument("--all", action="store_true", help="every task, following the pages")
    listing.set_defaults(run=commands.cmd_tasks_list)

    cancel = actions.add_parser("cancel", parents=[connection_options()],
                                help=f"cancel a queued or running task {BY_URL}",
                                epilog=EXIT_STATUSES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cancel.add_argument("task_id", help="as generate --no-wait or tasks list prints it")
    cancel.set_defaults(run=commands.cmd_tasks_cancel)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value

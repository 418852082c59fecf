"""The client commands: ``generate``, ``tasks list`` and ``tasks cancel``, over the SDK.

Results go to stdout (saved paths, the table, JSON); progress and messages to stderr, so that
``imagegate generate ... > paths.txt`` keeps only the paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegate_client import Client, TaskFailed, TaskStatus, image_data_uri
from imagegate_client.core import DEFAULT_MODEL

from imagegate.client_cli.exits import Exit, Outcome, outcome
from imagegate.client_cli.listing import table
from imagegate.client_cli.outputs import (
    UsageError,
    check_target,
    choose_format,
    output_paths,
    sniff_extension,
    write_file,
)
from imagegate.client_cli.progress import LiveProgress, ProgressRenderer

_REMOTE = ("http://", "https://", "data:")
LIST_LIMIT = 20  # tasks per page of `tasks list`, the API's default


@dataclass
class _Run:
    """What one command has learnt so far, for the message when it stops early."""

    command: str
    task_id: str | None = None
    task: TaskStatus | None = None
    files: list[str] = field(default_factory=list)


def cmd_generate(args: argparse.Namespace) -> int:
    run = _Run("generate")
    return _guarded(args, run, lambda: _generate(args, run))


def cmd_tasks_list(args: argparse.Namespace) -> int:
    run = _Run("tasks list")
    return _guarded(args, run, lambda: _list(args))


def cmd_tasks_cancel(args: argparse.Namespace) -> int:
    run = _Run("tasks cancel", task_id=args.task_id)
    return _guarded(args, run, lambda: _cancel(args))


# generate -----------------------------------------------------------------------------------


def _generate(args: argparse.Namespace, run: _Run) -> int:
    fmt = choose_format(args.format, args.output)
    check_target(args.output)
    images = [_reference(ref) for ref in args.image]
    with _client(args) as client:
        run.task_id = client.submit(
            args.prompt, images=images, model=args.model, aspect_ratio=args.ratio,
            resolution=args.resolution.lower(), output_format=fmt,
            google_search=args.google_search, num_images=args.num_images, seed=args.seed)
        if args.no_wait:
            _out(json.dumps({"taskId": run.task_id}) if args.json else run.task_id)
            return Exit.OK
        blobs = _wait_and_download(client, args, run)
    if not blobs:
        _err(f"task {run.task_id} succeeded but the service gave no result URL")
        return Exit.SERVER
    paths = output_paths(args.output, run.task_id, [sniff_extension(b, fmt) for b in blobs])
    for path, data in zip(paths, blobs, strict=True):
        run.files.append(str(write_file(path, data)))
    # Every file is written before the first path is printed: a reader that stops early
    # (``| head -1``) loses lines, not images.
    if args.json:
        _out(json.dumps(_task_json(run)))
    else:
        for path in paths:
            _out(str(path))
    return Exit.OK


def _wait_and_download(client: Client, args: argparse.Namespace, run: _Run) -> list[bytes]:
    """The bytes of each image of the submitted task, showing progress until they are here."""
    assert run.task_id is not None
    live = None if args.quiet else _live_progress()
    try:
        if live is not None:
            live.start(run.task_id, args.model)
        run.task = client.wait(run.task_id, model=args.model, timeout=args.timeout,
                               on_progress=live.update if live else None)
        urls = run.task.result_urls
        if live is not None:
            live.note(f"downloading {len(urls)} image{'s' if len(urls) != 1 else ''}")
        blobs = [client.download(url) for url in urls]
    except BaseException:
        if live is not None:
            live.stop()  # clear the line for the message that follows
        raise
    if live is not None:
        live.stop("succeeded")
    return blobs


def _reference(ref: str) -> str:
    """An --image as the API takes it: URLs and data: URIs as given, a local file as a data
    URI."""
    if ref.lower().startswith(_REMOTE):
        return ref
    path = Path(ref).expanduser()
    if not path.is_file():
        raise UsageError(f"--image {ref}: no such file (give a path, an http(s) URL or a data: "
                         "URI)")
    try:
        return image_data_uri(path)
    except OSError as exc:
        raise UsageError(f"--image {ref}: cannot read it: {exc.strerror or exc}") from exc


def _live_progress() -> LiveProgress:
    stream = sys.stderr
    tty = stream.isatty() and os.environ.get("TERM") != "dumb"
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    renderer = ProgressRenderer(tty=tty, width=shutil.get_terminal_size().columns,
                                unicode=encoding == "utf8")
    return LiveProgress(renderer, stream)


# tasks list, tasks cancel -------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    filters: dict[str, Any] = {"state": ",".join(args.state) if args.state else None,
                               "model": args.model}
    # Cut to a terminal's width; into a pipe or a file, whole lines.
    width = max(80, shutil.get_terminal_size().columns) if sys.stdout.isatty() else None
    printed = 0
    cursor = args.cursor
    with _client(args) as client:
        while True:  # with --all, each page printed as it comes, --limit tasks a request
            page = client.list_tasks(limit=args.limit, cursor=cursor, **filters)
            if args.json:
                for task in page.tasks:
                    _out(json.dumps(task.raw))
            elif page.tasks:
                lines = table(page.tasks, width=width)
                for line in lines if not printed else lines[1:]:
                    _out(line)
            printed += len(page.tasks)
            cursor = page.next_cursor
            if not (args.all and cursor):
                break
    if not printed and not args.json:
        _err("no tasks")
    next_cursor = None if args.all else cursor
    if next_cursor:
        _err(f"more tasks: imagegate tasks list{_list_flags(args)} --cursor {next_cursor} "
             "(or --all instead of --cursor)")
    return Exit.OK


def _list_flags(args: argparse.Namespace) -> str:
    """The flags that chose this page's tasks, which the next page's command must repeat: a
    cursor continues the list it came from, with the same filters."""
    flags = [f"--state {state}" for state in args.state or ()]
    if args.model:
        flags.append(f"--model {shlex.quote(args.model)}")
    if args.limit != LIST_LIMIT:
        flags.append(f"--limit {args.limit}")
    if args.json:
        flags.append("--json")
    return "".join(f" {flag}" for flag in flags)


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        done = client.cancel(args.task_id, model=args.model)
    if args.json:
        _out(json.dumps({"taskId": done.task_id, "state": done.state,
                         "refunded": done.refunded}))
    elif done.state == "canceled":
        _out(f"task {done.task_id} cancelled{', refunded' if done.refunded else ''}")
    else:
        _out(f"task {done.task_id} cancelling: its worker stops it shortly (refunded unless it "
             "finishes first)")
    return Exit.OK


# shared -------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    """The SDK's client, which reads the environment and checks the URL; its words for a
    missing or wrong argument name the command's options."""
    extra: dict[str, Any] = {}
    if getattr(args, "poll_interval", None) is not None:
        extra["poll_interval"] = args.poll_interval
    try:
        return Client(args.base_url, args.api_key, model=args.model or DEFAULT_MODEL, **extra)
    except ValueError as exc:
        message = str(exc).replace("base_url", "--base-url").replace("api_key", "--api-key")
        raise UsageError(message) from None


def _guarded(args: argparse.Namespace, run: _Run, body: Callable[[], int]) -> int:
    """Run ``body``; an error it was expected to meet becomes its message and exit status."""
    try:
        return body()
    except BrokenPipeError:
        # stdout's reader has gone (``| head``): as a program the pipe's end stops, quietly;
        # stdout to /dev/null, so that the interpreter's last flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.PIPE_CLOSED
    except (Exception, KeyboardInterrupt) as exc:
        said = outcome(exc)
        if said is None:
            raise
        if isinstance(exc, TaskFailed):
            run.task = exc.task
        _err(_explain(said, run, args))
        if args.json:
            _out(json.dumps({**_task_json(run), "error": {
                "message": said.message, "exitCode": int(said.code), "status": said.status,
                "field": said.field}}))
        return int(said.code)


def _explain(said: Outcome, run: _Run, args: argparse.Namespace) -> str:
    """The message, with what the user can do about a task that is still there."""
    task = run.task_id
    if said.code is Exit.INTERRUPTED and run.command == "generate":
        if task is None:
            return ("interrupted before the service answered; a task may have been made: "
                    "see imagegate tasks list")
        if run.task is None:
            return (f"interrupted; task {task} goes on: imagegate tasks cancel {task}"
                    f"{_model_flag(args)} stops it")
    local = [ref for ref in getattr(args, "image", []) if not ref.lower().startswith(_REMOTE)]
    if said.status == 413 and local:
        # A local file goes inside the request, as base64: a third larger than on disk.
        return (f"{said.message}: --image {' --image '.join(local)} went inside the request "
                "as base64, a third larger than the file; give smaller files, or http(s) URLs")
    if said.code is Exit.TIMEOUT:
        return (f"task {task} did not end within {args.timeout:g} s and goes on: imagegate "
                f"tasks cancel {task}{_model_flag(args)} stops it")
    urls = run.task.result_urls if run.task is not None else ()
    if len(run.files) < len(urls):  # the task made images this run did not save
        return said.message + "; its images: " + " ".join(urls)
    if run.command == "generate" and task is not None and run.task is None:
        # Submitted, then the wait failed (no server, a 5xx): the task may still end.
        return (f"{said.message}; task {task} goes on: imagegate tasks list shows it, "
                f"imagegate tasks cancel {task}{_model_flag(args)} stops it")
    return said.message


def _model_flag(args: argparse.Namespace) -> str:
    return "" if args.model == DEFAULT_MODEL else f" --model {args.model}"


def _task_json(run: _Run) -> dict[str, Any]:
    task = run.task
    if run.command == "tasks list":
        return {}
    body: dict[str, Any] = {"taskId": run.task_id}
    if task is not None:
        body.update({"state": task.state, "files": run.files,
                     "resultUrls": list(task.result_urls), "failCode": task.fail_code,
                     "failMsg": task.fail_msg,
                     "cost": None if task.cost is None else float(task.cost)})
    return body


def _out(line: str) -> None:
    print(line, flush=True)


def _err(message: str) -> None:
    print(f"imagegate: {message}", file=sys.stderr, flush=True)

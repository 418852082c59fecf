"""The client commands (`imagegate generate`, `tasks list`, `tasks cancel`) as a user runs them:
the real command against a real server on loopback, and against a plain APIXO-style API."""

from __future__ import annotations

import io
import json
import os
import pty
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.apixo_server import Fail, Succeed, apixo_server
from fakes.rogue_api import Handler, answer, envelope, events, hang_up, rogue_api, sse
from loopback import QuietHandler, png_bytes, serve_in_thread
from PIL import Image
from serverproc import Server, wait_done

pytestmark = pytest.mark.slow

# Where the server cannot stream a task's progress the client polls, by default every 10 s.
FAST_POLLS = ("--poll-interval", "0.1")


def run(base_url: str, key: str, *args: str, cwd: Path,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``imagegate ARGS`` with the service and key in the environment, as a user sets them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    if args[0] == "generate":
        args += FAST_POLLS
    return subprocess.run([sys.executable, "-m", "imagegate.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=90,
                          env={**clean, "IMAGEGATE_BASE_URL": base_url,
                               "IMAGEGATE_API_KEY": key, **(env or {})})


@dataclass(frozen=True)
class User:
    """Runs ``imagegate`` against one service with one key, in one directory."""

    base_url: str
    key: str
    cwd: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.base_url, self.key, *args, cwd=self.cwd)


@pytest.fixture
def ig(server: Server, tmp_path: Path) -> User:
    """A user of the module's server with a key of their own, in ``tmp_path``."""
    return User(server.base_url, server.new_key("10"), tmp_path)


def test_generate_saves_the_image_and_prints_its_path(ig: User, tmp_path: Path) -> None:
    proc = ig("generate", "a red fox", "--ratio", "16:9", "-o", "out/fox.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "out/fox.png\n"
    with Image.open(tmp_path / "out" / "fox.png") as image:
        assert (image.format, image.size) == ("PNG", (1376, 768))
    # not a terminal: plain lines, nothing redrawn
    assert proc.stderr.startswith("task ") and "submitted (nano-banana-2)" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("succeeded in ")
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr


def test_without_o_the_file_is_named_after_the_task_here(ig: User, tmp_path: Path) -> None:
    proc = ig("generate", "a red fox", "--format", "jpg")
    assert proc.returncode == 0, proc.stderr
    [name] = proc.stdout.split()
    task_id = name.removesuffix(".jpg")
    assert task_id in proc.stderr and (tmp_path / name).read_bytes()[:3] == b"\xff\xd8\xff"


def test_a_local_image_is_sent_as_a_data_uri(ig: User, tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "ref.png")
    proc = ig("generate", "make it blue", "--image", "ref.png", "-o", "edit.jpeg")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "edit.jpeg") as image:
        # auto takes the ratio nearest the reference's 3:2: the service decoded the file
        assert (image.format, image.size) == ("JPEG", (1264, 848))


def test_local_images_too_large_for_a_request_say_so(ig: User, tmp_path: Path) -> None:
    # 25 MiB, base64 in the body: past the service's 32 MiB a request.
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(25 << 20))
    proc = ig("generate", "make it blue", "--image", "huge.png", "--json")
    assert proc.returncode == 2 and "refused (413)" in proc.stderr
    assert "--image huge.png" in proc.stderr and "URL" in proc.stderr
    assert json.loads(proc.stdout)["error"]["status"] == 413


def test_several_images_are_numbered(ig: User, tmp_path: Path) -> None:
    proc = ig("generate", "two foxes", "-n", "2", "-o", "foxes/fox.png", "--json")
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert made["files"] == ["foxes/fox-1.png", "foxes/fox-2.png"]
    assert made["state"] == "success" and len(made["resultUrls"]) == 2
    assert made["cost"] == pytest.approx(0.10)
    assert sorted(p.name for p in (tmp_path / "foxes").iterdir()) == ["fox-1.png", "fox-2.png"]


def test_a_bad_key_exits_3_saying_which_setting(server: Server, tmp_path: Path) -> None:
    proc = run(server.base_url, "ig_wrong", "generate", "a fox", cwd=tmp_path)
    assert proc.returncode == 3
    assert "authentication failed (401)" in proc.stderr and "IMAGEGATE_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_bad_ratio_exits_2_naming_the_field(ig: User) -> None:
    proc = ig("generate", "a fox", "--ratio", "7:3")
    assert proc.returncode == 2
    assert "input.aspect_ratio" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2_before_anything_is_sent(ig: User, tmp_path: Path) -> None:
    missing = ig("generate", "a fox", "--image", "nope.png")
    assert missing.returncode == 2 and "--image nope.png: no such file" in missing.stderr
    clash = ig("generate", "a fox", "--format", "png", "-o", "fox.jpg")
    assert clash.returncode == 2 and "--format is png" in clash.stderr
    nowhere = run("", "", "generate", "a fox", cwd=tmp_path)
    assert nowhere.returncode == 2 and "IMAGEGATE_BASE_URL" in nowhere.stderr
    listing = ig("tasks", "list", "--json")
    assert listing.returncode == 0 and listing.stdout == ""  # nothing was submitted


def test_a_failed_task_exits_1_with_its_code_and_message(ig: User) -> None:
    proc = ig("generate", "[sandbox:fail=PromptInvalid] a fox")
    assert proc.returncode == 1
    assert "failed: PromptInvalid: " in proc.stderr and proc.stdout == ""
    as_json = ig("generate", "[sandbox:fail=SensitiveContent] a fox", "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["state"] == "failed" and body["failCode"] == "SensitiveContent"
    assert body["error"]["exitCode"] == 1 and body["files"] == []


def test_no_wait_prints_the_task_id_and_tasks_list_shows_it(ig: User) -> None:
    done = ig("generate", "a fox", "--json", "-q")
    failed = ig("generate", "[sandbox:fail=MissingParameter] a fox", "-q")
    queued = ig("generate", "another fox", "--no-wait")
    assert queued.returncode == 0 and len(queued.stdout.split()) == 1
    task_id = queued.stdout.strip()
    first = json.loads(done.stdout)["taskId"]

    table = ig("tasks", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TASK", "ID", "STATE", "CREATED", "COST", "DETAIL"]
    assert len(rows) == 3 and rows[0].startswith(task_id) and rows[2].startswith(first)
    assert "success" in rows[2] and "$0.05" in rows[2] and "1 image" in rows[2]
    assert "MissingParameter" in rows[1] and failed.returncode == 1

    only_failed = ig("tasks", "list", "--state", "failed", "--json").stdout.splitlines()
    assert [json.loads(line)["failCode"] for line in only_failed] == ["MissingParameter"]
    page = ig("tasks", "list", "--limit", "1")
    assert len(page.stdout.splitlines()) == 2 and "--cursor" in page.stderr
    every = ig("tasks", "list", "--all", "--limit", "1", "--json")
    assert len(every.stdout.splitlines()) == 3 and "--cursor" not in every.stderr


def test_an_output_named_for_a_format_the_service_does_not_make_is_refused(
        ig: User, tmp_path: Path) -> None:
    proc = ig("generate", "a fox", "-o", "fox.webp")
    assert proc.returncode == 2
    assert "fox.webp: the service makes PNG or JPEG images" in proc.stderr
    assert not (tmp_path / "fox.webp").exists()
    assert "no tasks" in ig("tasks", "list").stderr  # refused before anything was submitted


def test_the_next_page_command_it_prints_keeps_the_filters(ig: User) -> None:
    assert ig("generate", "an old fox", "-q").returncode == 0  # not failed, oldest
    failed = [json.loads(ig("generate", f"[sandbox:fail=PromptInvalid] fox {n}", "-q",
                            "--json").stdout)["taskId"] for n in range(3)]

    first = ig("tasks", "list", "--state", "failed", "--limit", "1")
    assert first.stdout.splitlines()[1].startswith(failed[2])
    [hint] = [line for line in first.stderr.splitlines() if "more tasks" in line]
    command = hint.split("more tasks: ", 1)[1].split(" (or ", 1)[0]
    assert command.startswith("imagegate tasks list ")
    second = ig(*shlex.split(command)[1:])  # pasted as printed
    assert second.returncode == 0, second.stderr
    assert [row.split()[0] for row in second.stdout.splitlines()[1:]] == [failed[1]]


def test_tasks_cancel_of_a_slow_task(ig: User, server: Server) -> None:
    task_id = ig("generate", "[sandbox:delay=60] slow", "--no-wait").stdout.strip()
    proc = ig("tasks", "cancel", task_id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"task {task_id} cancel")  # cancelled, or cancelling
    with server.client(ig.key) as c:
        assert wait_done(c, task_id)["failCode"] == "Canceled"
    again = ig("tasks", "cancel", task_id)
    assert again.returncode == 2 and "has already ended" in again.stderr


def test_timeout_exits_7_and_says_how_to_cancel(ig: User) -> None:
    proc = ig("generate", "[sandbox:delay=60] slow", "--timeout", "0.5")
    assert proc.returncode == 7
    task_id = proc.stderr.split()[1]  # "task ID submitted ..."
    assert f"imagegate tasks cancel {task_id}" in proc.stderr
    assert ig("tasks", "cancel", task_id).returncode == 0


def test_ctrl_c_exits_130_naming_the_task(server: Server, tmp_path: Path) -> None:
    key = server.new_key("1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    with subprocess.Popen(
            [sys.executable, "-m", "imagegate.cli", "generate", "[sandbox:delay=60] slow",
             "--base-url", server.base_url, "--api-key", key, *FAST_POLLS], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        task_id = proc.stderr.readline().split()[1]  # "task ID submitted (...)"
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(30) == 130
    assert f"interrupted; task {task_id} goes on: imagegate tasks cancel {task_id}" in rest
    assert run(server.base_url, key, "tasks", "cancel", task_id, cwd=tmp_path).returncode == 0


def test_on_a_terminal_progress_is_one_redrawn_line(server: Server, tmp_path: Path) -> None:
    key = server.new_key("1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    main, follower = pty.openpty()
    seen = io.BytesIO()
    with subprocess.Popen(
            [sys.executable, "-m", "imagegate.cli", "generate", "[sandbox:delay=1] a fox",
             "--base-url", server.base_url, "--api-key", key, "-o", "fox.png", *FAST_POLLS],
            cwd=tmp_path, env={**env, "TERM": "xterm"}, stdout=subprocess.PIPE,
            stderr=follower) as proc:
        os.close(follower)
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the command closed the terminal
                break
            if not chunk:
                break
            seen.write(chunk)
        os.close(main)
        assert proc.wait(30) == 0
        assert proc.stdout is not None and proc.stdout.read() == b"fox.png\n"
    text = seen.getvalue().decode()
    assert "\r\x1b[K" in text and "succeeded in " in text
    assert text.count("\n") == 2  # the submitted line and the last one; the rest redrawn


def test_generate_against_a_plain_apixo_style_api(tmp_path: Path) -> None:
    with apixo_server() as apixo:
        apixo.script([Succeed(polls=2), Fail("CONTENT_VIOLATION", "blocked")])
        ok = run(apixo.base_url, apixo.api_key, "generate", "a fox", "--ratio", "4:3",
                 "-o", "fox.png", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        with Image.open(tmp_path / "fox.png") as image:
            assert image.size == (1200, 896)
        assert apixo.submits[0]["input"]["prompt"] == "a fox"
        assert apixo.polls[apixo.task_ids[0]] >= 3  # no stream: it polled statusTask
        blocked = run(apixo.base_url, apixo.api_key, "generate", "a fox", cwd=tmp_path)
        assert blocked.returncode == 1
        assert "CONTENT_VIOLATION: blocked" in blocked.stderr


def _streaming_service(base: list[str]) -> type[QuietHandler]:
    """A service that streams one task's progress as docs/contract.md's event stream sends it:
    queue positions, stages, then ``done``."""
    steps = [{"state": "processing", "stage": "queued", "queuePosition": 2},
             {"state": "processing", "stage": "queued", "queuePosition": 1},
             {"state": "processing", "stage": "generating"}]

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send(200, {"Content-Type": "application/json"},
                      json.dumps({"code": 200, "message": "success",
                                  "data": {"taskId": "t1"}}).encode())

        def do_GET(self) -> None:
            if self.path == "/files/t1.png":
                self.send(200, {"Content-Type": "image/png"}, png_bytes((8, 8), (0, 0, 0)))
                return
            assert self.path.startswith("/api/v1/streamTask/nano-banana-2?taskId=t1")
            done = {"taskId": "t1", "state": "success", "createTime": 1, "completeTime": 2,
                    "resultJson": json.dumps({"resultUrls": [base[0] + "/files/t1.png"]})}
            events = [f"event: status\nid: {i}\ndata: "
                      f"{json.dumps({'taskId': 't1', 'createTime': 1, **step})}"
                      for i, step in enumerate(steps)]
            events.append("event: done\nid: 9\ndata: " + json.dumps(
                {"code": 200, "message": "success", "data": done}))
            body = "retry: 1000\n\n" + "".join(e + "\n\n" for e in events)
            self.send(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                      body.encode())

    return Handler


class _WebSite(QuietHandler):
    """A web server that is not the task API: every path answers an HTML page."""

    def answer(self) -> None:
        self.send(404, {"Content-Type": "text/html"},
                  b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>")

    do_GET = do_POST = answer


def test_a_base_url_that_is_not_the_api_is_named_as_the_likely_cause(tmp_path: Path) -> None:
    with serve_in_thread(_WebSite) as base_url:
        for command in (("generate", "a fox"), ("tasks", "list")):
            proc = run(base_url, "k", *command, cwd=tmp_path)
            assert proc.returncode == 2
            assert "the answer is not the task API's" in proc.stderr
            assert "--base-url" in proc.stderr and "<html>" not in proc.stderr


def test_progress_shows_the_queue_position_a_streaming_service_sends(tmp_path: Path) -> None:
    base: list[str] = []
    with serve_in_thread(_streaming_service(base)) as base_url:
        base.append(base_url)
        proc = run(base_url, "k", "generate", "a fox", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = [line.split(None, 1)[1] for line in proc.stderr.splitlines()[1:-1]]
    assert steps == ["queued, position 2 in line", "queued, position 1 in line",
                     "generating", "downloading 1 image"]
    assert (tmp_path / "t1.png").read_bytes().startswith(b"\x89PNG")


SUBMITTED = answer(200, envelope({"taskId": "t1"}))


@pytest.mark.parametrize("stream", [hang_up, events(sse("status", "{not json"))],
                         ids=["down", "garbage"])
def test_an_error_after_the_submit_exits_6_naming_the_task_that_goes_on(
        stream: Handler, tmp_path: Path) -> None:
    with rogue_api({"generateTask": SUBMITTED, "streamTask": stream}) as api:
        proc = run(api.base_url + "/api/v1/", "k", "generate", "a fox", "-q", "--json",
                   "--timeout", "1", cwd=tmp_path)
        assert api.calls("generateTask") == 1
    assert proc.returncode == 6, proc.stderr
    assert "task t1 goes on" in proc.stderr and "imagegate tasks cancel t1" in proc.stderr
    said = json.loads(proc.stdout)
    assert said["taskId"] == "t1" and said["error"]["exitCode"] == 6


def run_into_closed_pipe(user: User, *args: str) -> subprocess.CompletedProcess[str]:
    """``imagegate ARGS`` whose stdout is a pipe its reader has already closed (``| head -1``
    once it has its line)."""
    reader, writer = os.pipe()
    os.close(reader)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    try:
        polls = FAST_POLLS if args[0] == "generate" else ()
        return subprocess.run([sys.executable, "-m", "imagegate.cli", *args, *polls],
                              cwd=user.cwd, stdout=writer, stderr=subprocess.PIPE, text=True,
                              timeout=90, env={**clean, "IMAGEGATE_BASE_URL": user.base_url,
                                               "IMAGEGATE_API_KEY": user.key})
    finally:
        os.close(writer)


def test_a_stdout_closed_early_saves_every_image_and_exits_141_quietly(ig: User,
                                                                     tmp_path: Path) -> None:
    proc = run_into_closed_pipe(ig, "generate", "a fox", "-n", "2", "-o", "out/", "-q")
    assert proc.returncode == 141 and proc.stderr == ""
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
    listing = run_into_closed_pipe(ig, "tasks", "list")
    assert listing.returncode == 141 and listing.stderr == ""

"""The pure parts of the client commands: the progress display, where images are written, the
task table and the exit statuses."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes.rogue_api import Handler, answer, envelope, rogue_api, task
from imagegate_client import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    Client,
    Conflict,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Progress,
    RateLimited,
    ServerError,
    TaskFailed,
    TaskStatus,
    WaitTimeout,
)

from imagegate.cli import main
from imagegate.client_cli.exits import Exit, outcome
from imagegate.client_cli.listing import table
from imagegate.client_cli.outputs import (
    UsageError,
    WriteError,
    check_target,
    choose_format,
    output_paths,
    sniff_extension,
    write_file,
)
from imagegate.client_cli.progress import (
    ERASE_LINE,
    LiveProgress,
    ProgressRenderer,
    describe,
    format_elapsed,
)

TASK = "3f2a" * 8


def P(state: str = "processing", stage: str | None = "queued",
      queue_position: int | None = None) -> Progress:
    return Progress(TASK, state, stage, queue_position, elapsed_s=0.0)


# progress -----------------------------------------------------------------------------------


def test_states_in_words() -> None:
    assert describe("processing", "queued", 3) == "queued, position 3 in line"
    assert describe("processing", "retrying", 1) == "waiting to retry, position 1 in line"
    assert describe("processing", "fetching", None) == "fetching references"
    assert describe("processing", "generating", None) == "generating"
    assert describe("processing", None, None) == "processing"  # a server without stages
    assert describe("processing", "teleporting", None) == "teleporting"  # unknown: as given
    assert describe("success", "done", None) == "succeeded"
    assert describe("failed", "done", None) == "failed"


def test_elapsed_reads_as_seconds_minutes_or_hours() -> None:
    assert [format_elapsed(s) for s in (0, 4.25, 59.9, 65, 3599, 7380, -1)] == [
        "0.0s", "4.2s", "59.9s", "1m05s", "59m59s", "2h03m", "0.0s"]


def test_plain_output_is_one_line_per_change_and_no_control_characters() -> None:
    r = ProgressRenderer(tty=False)
    text = r.submitted(TASK, "nano-banana-2")
    text += r.update(P(queue_position=2), 0.1)
    text += r.update(P(queue_position=2), 0.5)  # nothing new
    text += r.tick(0.9)  # no clock between changes
    text += r.update(P(queue_position=1), 1.0)
    text += r.update(P(stage="generating"), 2.0)
    text += r.update(P(state="success", stage="done"), 2.9)  # said once, by the last line
    text += r.note("downloading 1 image", 3.0)
    text += r.finish("succeeded", 3.5)
    assert text.splitlines() == [
        f"task {TASK} submitted (nano-banana-2)",
        "   0.1s  queued, position 2 in line",
        "   1.0s  queued, position 1 in line",
        "   2.0s  generating",
        "   3.0s  downloading 1 image",
        "succeeded in 3.5s",
    ]
    assert "\r" not in text and "\x1b" not in text


def test_terminal_output_redraws_one_line_with_a_running_clock() -> None:
    r = ProgressRenderer(tty=True, unicode=False)
    first = r.update(P(queue_position=4), 0.2)
    assert first == ERASE_LINE + "| queued, position 4 in line  0.2s"
    assert r.tick(1.3) == ERASE_LINE + "/ queued, position 4 in line  1.3s"
    assert r.update(P(stage="running"), 1.4).endswith("running  1.4s")
    assert "\n" not in first + r.tick(2.0)
    assert r.finish("succeeded", 5.0) == ERASE_LINE + "succeeded in 5.0s\n"
    assert r.clear() == ""  # the line is already gone


def test_terminal_line_never_wraps() -> None:
    r = ProgressRenderer(tty=True, width=24)
    line = r.update(P(stage="a-very-long-stage-name-from-another-server"), 12.0)
    assert len(line.removeprefix(ERASE_LINE)) == 23


def test_terminal_spinner_is_unicode_only_where_the_stream_can_take_it() -> None:
    assert ProgressRenderer(tty=True).update(P(), 0)[len(ERASE_LINE)] == "⠋"
    assert ProgressRenderer(tty=True, unicode=False).update(P(), 0)[len(ERASE_LINE)] == "|"


def test_nothing_to_clear_before_anything_was_drawn() -> None:
    r = ProgressRenderer(tty=True)
    assert r.tick(1.0) == "" and r.clear() == ""
    assert r.finish("succeeded", 1.0) == "succeeded in 1.0s\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_progress_writes_plain_lines_timed_by_its_clock() -> None:
    clock, out = Clock(), io.StringIO()
    live = LiveProgress(ProgressRenderer(tty=False), out, clock=clock)
    live.start(TASK, "nano-banana-2")
    clock.now += 2
    live.update(P(stage="running"))
    live.stop("succeeded")
    assert out.getvalue().splitlines()[1:] == ["   2.0s  running", "succeeded in 2.0s"]


def test_live_progress_on_a_terminal_redraws_until_stopped() -> None:
    out = io.StringIO()
    live = LiveProgress(ProgressRenderer(tty=True), out, interval=0.001)
    live.start(TASK, "nano-banana-2")
    live.update(P(stage="running"))
    while out.getvalue().count(ERASE_LINE) < 3:  # the thread redraws by itself
        time.sleep(0.001)
    live.stop()
    text = out.getvalue()
    assert text.endswith(ERASE_LINE) and text.count("\n") == 1  # the submitted line only
    assert out.getvalue() == text  # nothing after stop


# outputs ------------------------------------------------------------------------------------


def test_default_names_are_the_task_id_in_the_current_directory() -> None:
    assert output_paths(None, TASK, [".png"]) == [Path(f"{TASK}.png")]
    assert output_paths(None, TASK, [".png", ".png"]) == [Path(f"{TASK}-1.png"),
                                                          Path(f"{TASK}-2.png")]
    assert output_paths(None, TASK, [".jpg"], cwd=Path("/x")) == [Path(f"/x/{TASK}.jpg")]


def test_output_file_and_numbered_files_for_several_images() -> None:
    assert output_paths("out/fox.png", TASK, [".png"]) == [Path("out/fox.png")]
    assert output_paths("out/fox.png", TASK, [".png"] * 3) == [
        Path("out/fox-1.png"), Path("out/fox-2.png"), Path("out/fox-3.png")]
    assert output_paths("fox", TASK, [".jpeg"]) == [Path("fox.jpeg")]  # the image's extension
    assert output_paths("fox", TASK, [".png", ".png"]) == [Path("fox-1.png"), Path("fox-2.png")]


def test_output_directory_existing_or_ending_in_a_slash(tmp_path: Path) -> None:
    assert output_paths(str(tmp_path), TASK, [".png"]) == [tmp_path / f"{TASK}.png"]
    assert output_paths("new/", TASK, [".png", ".png"]) == [Path(f"new/{TASK}-1.png"),
                                                            Path(f"new/{TASK}-2.png")]


def test_format_from_the_flag_or_the_output_extension() -> None:
    assert choose_format(None, None) == "png"
    assert choose_format(None, "fox.JPG") == "jpg"
    assert choose_format(None, "fox.jpeg") == "jpeg"
    assert choose_format(None, "fox.v2") == "png"  # not an image's extension: no hint
    with pytest.raises(UsageError, match=r"-o fox.webp: the service makes PNG or JPEG"):
        choose_format(None, "fox.webp")  # an image format the API does not make
    assert choose_format("JPEG", "fox.jpg") == "jpeg"  # jpg and jpeg are one format
    assert choose_format("jpg", "images/") == "jpg"
    with pytest.raises(UsageError, match=r"-o fox.png names a png file but --format is jpeg"):
        choose_format("jpeg", "fox.png")


def test_an_output_that_cannot_be_written_is_refused_before_submitting(tmp_path: Path) -> None:
    check_target(None)
    check_target(str(tmp_path / "a" / "b" / "fox.png"))  # directories are made
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a directory"):
        check_target(str(tmp_path / "file" / "fox.png"))
    with pytest.raises(UsageError, match="is not a directory"):
        check_target(str(tmp_path / "file" / "dir") + "/")


def test_extension_follows_the_bytes() -> None:
    assert sniff_extension(b"\x89PNG\r\n\x1a\n....", "jpeg") == ".png"
    assert sniff_extension(b"\xff\xd8\xff\xe0", "jpg") == ".jpg"
    assert sniff_extension(b"\xff\xd8\xff\xe0", "png") == ".jpeg"
    assert sniff_extension(b"RIFF\0\0\0\0WEBPVP8 ", "png") == ".webp"
    assert sniff_extension(b"GIF89a", "png") == ".gif"
    assert sniff_extension(b"???", "png") == ".png"


def test_write_file_makes_its_directory_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "fox.png"
    assert write_file(target, b"one") == target
    write_file(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["fox.png"]
    assert target.stat().st_mode & 0o777 != 0o600  # readable as any new file, by the umask


# listing ------------------------------------------------------------------------------------


def T(task_id: str, state: str, stage: str | None = None,
      result_urls: tuple[str, ...] = (), *, create_time: int | None = 1_767_225_600_000,
      **fields: Any) -> TaskStatus:
    return TaskStatus(task_id, state, stage, result_urls, create_time=create_time, **fields)


def test_task_table_has_a_header_and_one_aligned_row_per_task() -> None:
    lines = table([
        T("a" * 32, "success", "done", ("u1", "u2"), cost=Decimal("0.1")),
        T("b" * 32, "failed", "done", fail_code="PromptInvalid", fail_msg="bad prompt"),
        T("c" * 32, "processing", "queued", source="my-app"),
        T("d" * 32, "processing", None, create_time=None, cost=Decimal("0.125")),
    ])
    assert lines[0].split() == ["TASK", "ID", "STATE", "CREATED", "COST", "DETAIL"]
    assert lines[1] == f"{'a' * 32}  success     2026-01-01 00:00:00Z  $0.10   2 images"
    assert lines[2].endswith("failed      2026-01-01 00:00:00Z          PromptInvalid: bad prompt")
    assert lines[3].endswith("queued [my-app]")
    assert lines[4].endswith("$0.125  processing")
    detail = lines[0].index("DETAIL")  # the columns line up
    assert [line[detail - 2:detail] for line in lines] == ["  "] * 5
    assert [lines[i].rindex(word) for i, word in enumerate(
        ["DETAIL", "2 images", "PromptInvalid", "queued", "processing"])] == [detail] * 5


def test_task_table_cuts_long_lines_to_the_width() -> None:
    [_, line] = table([T("a" * 32, "failed", fail_code="X", fail_msg="m" * 500)], width=100)
    assert len(line) == 100 and line.endswith("...")
    [_, whole] = table([T("a" * 32, "failed", fail_code="X", fail_msg="m" * 500)], width=None)
    assert whole.endswith("m" * 500)


# exit statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "code", "words"), [
    (TaskFailed(T("t1", "failed", fail_code="PromptInvalid", fail_msg="no")), Exit.TASK_FAILED,
     "task t1 failed: PromptInvalid: no"),
    (UsageError("-o x: y is not a directory"), Exit.USAGE, "-o x: y is not a directory"),
    (ValueError("base_url is required"), Exit.USAGE, "base_url is required"),
    (InvalidRequest("bad ratio", status=400, field="input.aspect_ratio"), Exit.USAGE,
     "refused (400): bad ratio (field input.aspect_ratio)"),
    (NotFound("no such task", status=404), Exit.USAGE, "not found (404): no such task"),
    (Conflict("already ended", status=409), Exit.USAGE, "refused (409): already ended"),
    (AuthenticationError("bad key", status=401), Exit.AUTH, "IMAGEGATE_API_KEY"),
    (PermissionDenied("not this model", status=403), Exit.AUTH, "permission denied (403)"),
    (InsufficientBalance("pay", status=402), Exit.BALANCE, "insufficient balance (402): pay"),
    (RateLimited("slow down", retry_after=2.5), Exit.RATE_LIMITED, "retry after 2.5 s"),
    (ServerError("boom", status=503), Exit.SERVER, "server error (503): boom"),
    (APIError("odd", status=418), Exit.SERVER, "server error (418): odd"),
    (APIConnectionError("connection refused"), Exit.SERVER, "cannot reach the service"),
    (WaitTimeout("t1", 5), Exit.TIMEOUT, "t1 did not end within 5 s"),
    (KeyboardInterrupt(), Exit.INTERRUPTED, "interrupted"),
    (WriteError("cannot write the image x.png: No space left on device"), Exit.TASK_FAILED,
     "cannot write the image"),
])
def test_each_class_of_failure_has_its_exit_status(exc: BaseException, code: Exit,
                                                  words: str) -> None:
    said = outcome(exc)
    assert said is not None and said.code == code and words in said.message


def test_exit_statuses_are_the_documented_ones() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 3, 4, 5, 6, 7, 130, 141]
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    section = doc[doc.index("## Exit statuses"):]
    assert [int(n) for n in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)] == list(Exit)
    assert outcome(RuntimeError("a bug")) is None  # shown with its traceback, not hidden


# the seam -----------------------------------------------------------------------------------


def test_client_commands_import_nothing_of_the_service() -> None:
    code = ("import sys, imagegate; before = set(sys.modules); "
            "import imagegate.client_cli.commands, imagegate.client_cli.parser; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('imagegate.') "
            "and not m.startswith('imagegate.client_cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"  # only the SDK, imagegate_client, which other servers' users have too


# the commands, in process, against a scripted API -------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``imagegate ARGV``: its exit status, stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_tasks_list_all_asks_limit_tasks_a_page_and_prints_each_page_as_it_comes(
        capsys: pytest.CaptureFixture[str]) -> None:
    first = [task(f"t{i}", "success") for i in range(2)]
    pages: list[Handler] = [
        answer(200, envelope({"tasks": first, "nextCursor": "c1"})),
        answer(401, {"code": 401, "message": "Unauthorized", "data": {"error": "key revoked"}}),
    ]
    with rogue_api({"tasks": pages}) as api:
        code, out, _ = cli(capsys, "tasks", "list", "--all", "--limit", "2", "--json",
                             "--base-url", api.base_url, "--api-key", "k")
    assert [path for _, path, _ in api.requests] == ["/api/v1/tasks?limit=2",
                                                     "/api/v1/tasks?limit=2&cursor=c1"]
    # The first page is out before the second request failed.
    assert code == Exit.AUTH
    assert [json.loads(line).get("taskId") for line in out.splitlines()] == ["t0", "t1", None]


def test_an_image_file_that_cannot_be_read_is_a_usage_error_not_a_write_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/self/mem is a file that answers every read from its start with an I/O error.
    code, out, err = cli(capsys, "generate", "a fox", "--image", "/proc/self/mem", "--json",
                         "--base-url", "http://127.0.0.1:9", "--api-key", "k")
    assert code == Exit.USAGE and "cannot read it" in err and "write" not in err
    assert json.loads(out)["error"]["exitCode"] == 2


def test_a_base_url_without_its_scheme_is_refused_by_the_client_and_the_command() -> None:
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        Client("127.0.0.1:8000", "k")


def test_a_command_names_its_option_for_a_base_url_without_scheme(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "tasks", "list", "--base-url", "127.0.0.1:8000", "--api-key", "k")
    assert code == Exit.USAGE and "--base-url '127.0.0.1:8000' must start with http://" in err


@pytest.mark.parametrize("argv", [
    ("tasks", "list", "--limit", "0", "--json"),
    ("generate", "--json"),
    ("tasks", "cancel", "t1", "--json", "--bogus"),
])
def test_a_refused_argument_of_a_client_command_with_json_prints_a_json_error(
        capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2 and "error:" in err
    error = json.loads(out)["error"]
    assert error["exitCode"] == 2 and error["message"] in err


def test_a_refused_argument_of_an_operator_command_prints_no_json(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "keys", "list", "--json", "--bogus")
    assert code == 2 and out == ""


def test_tasks_list_all_prints_one_header_and_pages_that_line_up(
        capsys: pytest.CaptureFixture[str]) -> None:
    pages: list[Handler] = [
        answer(200, envelope({"tasks": [task("a" * 32, "failed", failCode="X", failMsg="m")],
                              "nextCursor": "c1"})),
        answer(200, envelope({"tasks": [task("b" * 32, stage="queued")], "nextCursor": None})),
    ]
    with rogue_api({"tasks": pages}) as api:
        code, out, _ = cli(capsys, "tasks", "list", "--all", "--base-url", api.base_url,
                           "--api-key", "k")
    header, first, second = out.splitlines()
    assert code == Exit.OK and header.startswith("TASK ID")
    assert header.index("DETAIL") == first.index("X: m") == second.index("queued")

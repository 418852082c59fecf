"""``imagegate mcp`` as an assistant runs it: the ``mcp`` SDK's own client starts it over stdio
(or reaches it over streamable HTTP), and it talks to a real ``imagegate serve`` on loopback,
whose sandbox route draws each image at the contract's size."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from imagegate_client import AsyncClient
from imagegate_client import wire_models as wm
from loopback import QuietHandler, png_bytes, serve_in_thread
from mcp import Client
from mcp.types import CallToolResult, ImageContent, TextContent
from mcp_clients import McpUser, http_server, http_user, stdio_user
from PIL import Image
from serverproc import Server, free_port, t2i

from imagegate.mcp.server import build
from imagegate.mcp.tools import Tools

pytestmark = pytest.mark.slow

SUBMIT = "/api/v1/generateTask/nano-banana-2"
TOOLS = {"generate_image", "edit_image", "get_task", "list_tasks", "cancel_task",
         "get_balance", "list_models"}


@pytest.fixture(scope="module")
def user(server: Server, key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUser]:
    """One ``imagegate mcp`` on stdio for the module, with the module's key."""
    log = tmp_path_factory.mktemp("mcp") / "stdio.log"
    with stdio_user(server.base_url, key, log) as connected:
        yield connected


@pytest.fixture(scope="module")
def reference_url() -> Iterator[str]:
    """An http URL answering a 200x400 PNG (nearest ratio 9:16), which the service fetches."""
    portrait = png_bytes((200, 400), (20, 120, 220))

    class Picture(QuietHandler):
        def do_GET(self) -> None:
            self.send(200, {"Content-Type": "image/png"}, portrait)

    with serve_in_thread(Picture) as base:
        yield f"{base}/portrait.png"


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def images_of(result: CallToolResult) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(c.data)))
            for c in result.content if isinstance(c, ImageContent)]


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, text_of(result)
    return result.structured_content


def succeeded(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    return structured(result)


def test_the_tools_state_the_contract_limits_in_their_schemas(user: McpUser) -> None:
    tools = user.tools()
    assert set(tools) == TOOLS
    for name in ("generate_image", "edit_image"):
        props = tools[name].input_schema["properties"]
        assert props["aspect_ratio"]["enum"] == ["auto", *wm.RATIOS]
        assert props["resolution"]["enum"] == list(wm.RESOLUTIONS)
        assert props["output_format"]["enum"] == list(wm.OUTPUT_FORMATS)
        assert props["prompt"]["maxLength"] == wm.MAX_PROMPT_CHARS
        assert props["num_images"]["maximum"] == wm.MAX_IMAGES
    edit = tools["edit_image"].input_schema
    assert "images" in edit["required"]
    assert (edit["properties"]["images"]["minItems"],
            edit["properties"]["images"]["maxItems"]) == (1, wm.MAX_REFERENCES)
    optional = tools["generate_image"].input_schema["properties"]["images"]["anyOf"][0]
    assert optional["maxItems"] == wm.MAX_REFERENCES
    assert tools["list_tasks"].input_schema["properties"]["limit"]["maximum"] == \
        wm.MAX_PAGE_TASKS
    assert tools["get_balance"].annotations and tools["get_balance"].annotations.read_only_hint
    assert all(tool.description and "  " not in tool.description for tool in tools.values())


def test_generate_image_answers_the_image_its_url_and_the_task_id(user: McpUser) -> None:
    result = user.call("generate_image", {"prompt": "a red fox", "aspect_ratio": "16:9"})
    body = succeeded(result)
    [image] = images_of(result)
    assert (image.format, image.size) == ("PNG", (1376, 768))
    [url] = body["resultUrls"]
    assert body["state"] == "success" and len(body["taskId"]) == 32
    assert body["taskId"] in text_of(result) and url in text_of(result)
    # the image content is the result URL's image
    [content] = [c for c in result.content if isinstance(c, ImageContent)]
    assert content.mime_type == "image/png"
    assert base64.b64decode(content.data) == httpx.get(url).content


def test_progress_notifications_say_state_stage_and_queue(user: McpUser, server: Server,
                                                          key: str) -> None:
    # The server's 4 worker slots busy for a while: the tool's task waits in the queue.
    with server.client(key) as http:
        for _ in range(4):
            r = http.post(SUBMIT, json=t2i("[sandbox:delay=1.5] a blocking fox"))
            assert r.status_code == 200, r.text
    result = user.call("generate_image", {"prompt": "a queued fox", "output_format": "jpeg"},
                       progress=True)
    [image] = images_of(result)
    assert (image.format, image.size) == ("JPEG", (1024, 1024))
    task_id = succeeded(result)["taskId"]
    steps = [n.progress for n in user.notices]
    assert steps and steps == sorted(set(steps))  # it only grows
    messages = [n.message or "" for n in user.notices]
    assert all(m.startswith(f"task {task_id}: ") for m in messages), messages
    assert re.search(r": queued, position (\d+) in line \(state processing, stage queued, "
                     r"queue position \1\)$", messages[0]), messages
    assert "stage generating" in " ".join(messages)
    assert messages[-1].endswith("succeeded (state success, stage done)")


def test_several_images_come_back_each_with_its_url(user: McpUser) -> None:
    result = user.call("generate_image", {"prompt": "two foxes", "num_images": 2,
                                          "aspect_ratio": "4:3", "resolution": "2K"})
    body = succeeded(result)
    assert [image.size for image in images_of(result)] == [(2400, 1792)] * 2
    assert len(body["resultUrls"]) == 2 and body["cost"] == pytest.approx(0.16)
    assert [i["url"] for i in body["images"]] == body["resultUrls"]


def test_edit_image_sends_a_url_and_a_local_file(user: McpUser, reference_url: str,
                                                 tmp_path: Path) -> None:
    local = tmp_path / "landscape.png"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(local)
    result = user.call("edit_image", {"prompt": "paint them blue",
                                      "images": [reference_url, str(local)]})
    succeeded(result)
    [image] = images_of(result)
    # auto: the ratio nearest the first reference's (the fetched URL's 1:2 -> 9:16)
    assert image.size == (768, 1376)
    result = user.call("edit_image", {"prompt": "paint it blue", "images": [str(local)]})
    [image] = images_of(result)
    assert image.size == (1264, 848)  # 3:2, from the local file the service decoded


def test_a_missing_local_file_is_refused_naming_it(user: McpUser, tmp_path: Path) -> None:
    result = user.call("edit_image", {"prompt": "blue", "images": [str(tmp_path / "no.png")]})
    assert result.is_error
    assert structured(result)["field"] == "images[0]" and "no such file" in text_of(result)


def test_an_invalid_ratio_is_refused_before_any_request(user: McpUser) -> None:
    before = [t["taskId"] for t in succeeded(user.call("list_tasks", {"limit": 100}))["tasks"]]
    result = user.call("generate_image", {"prompt": "a fox", "aspect_ratio": "7:3"})
    assert result.is_error
    assert "aspect_ratio" in text_of(result) and "'7:3' is not one of auto, 1:1" in \
        text_of(result)
    for bad in ({"prompt": "   "}, {"prompt": "x" * (wm.MAX_PROMPT_CHARS + 1)},
                {"prompt": "a fox", "resolution": "8k"}, {"prompt": "a fox", "num_images": 5},
                {"prompt": "a fox", "images": ["https://example.com/a.png"] * 15}):
        assert user.call("generate_image", bad).is_error, bad
    assert user.call("edit_image", {"prompt": "a fox", "images": []}).is_error
    after = [t["taskId"] for t in succeeded(user.call("list_tasks", {"limit": 100}))["tasks"]]
    assert after == before  # nothing was submitted


def test_a_failed_task_is_a_tool_error_with_its_fail_code(user: McpUser) -> None:
    result = user.call("generate_image", {"prompt": "[sandbox:fail=SensitiveContent] a fox"})
    assert result.is_error and not images_of(result)
    body = structured(result)
    assert (body["state"], body["failCode"]) == ("failed", "SensitiveContent")
    assert body["failMsg"] and len(body["taskId"]) == 32
    assert f"task {body['taskId']} failed: SensitiveContent: " in text_of(result)
    # the server lives on
    assert not user.call("get_task", {"task_id": body["taskId"]}).is_error


def test_get_task_and_list_tasks_show_the_tools_tasks(user: McpUser) -> None:
    made = succeeded(user.call("generate_image", {"prompt": "a listed fox"}))
    task = succeeded(user.call("get_task", {"task_id": made["taskId"]}))
    assert task["state"] == "success" and task["resultUrls"] == made["resultUrls"]
    assert task["cost"] == pytest.approx(0.05)
    page = succeeded(user.call("list_tasks", {"state": ["success"], "limit": 1}))
    [listed] = page["tasks"]
    assert listed["taskId"] == made["taskId"] and listed["model"] == "nano-banana-2"
    assert listed["source"] == "imagegate-mcp" and page["nextCursor"]
    nxt = succeeded(user.call("list_tasks", {"state": ["success"], "limit": 1,
                                             "cursor": page["nextCursor"]}))
    assert nxt["tasks"][0]["taskId"] != made["taskId"]
    assert user.call("list_tasks", {"state": ["done"]}).is_error
    missing = user.call("get_task", {"task_id": "0" * 32})
    assert missing.is_error and structured(missing)["status"] == 404


def test_cancel_task_cancels_a_running_task(user: McpUser, server: Server, key: str) -> None:
    with server.client(key) as http:
        task_id = http.post(SUBMIT, json=t2i("[sandbox:delay=60] a long fox")).json()[
            "data"]["taskId"]
    done = succeeded(user.call("cancel_task", {"task_id": task_id}))
    assert done["taskId"] == task_id and done["state"] in ("canceled", "cancelling")
    again = user.call("cancel_task", {"task_id": task_id})
    assert not again.is_error or structured(again)["status"] == 409


def test_get_balance_and_list_models(user: McpUser) -> None:
    balance = succeeded(user.call("get_balance"))["balanceUsd"]
    assert 0 < balance < 100
    succeeded(user.call("generate_image", {"prompt": "a paid fox"}))
    assert succeeded(user.call("get_balance"))["balanceUsd"] == pytest.approx(balance - 0.05)
    result = user.call("list_models")
    models = {m["id"]: m for m in succeeded(result)["models"]}
    assert models["nano-banana-2"]["sandbox"] is True
    assert models["nano-banana-2"]["maxReferences"] == wm.MAX_REFERENCES
    assert "nano-banana-2" in text_of(result)


def test_a_bad_key_is_a_tool_error_naming_the_setting(server: Server, tmp_path: Path) -> None:
    with stdio_user(server.base_url, "ig_wrong", tmp_path / "bad.log") as bad:
        for name, args in (("get_balance", {}), ("generate_image", {"prompt": "a fox"})):
            result = bad.call(name, args)
            assert result.is_error and structured(result)["status"] == 401
            assert "authentication failed (401)" in text_of(result)
            assert "IMAGEGATE_API_KEY" in text_of(result)


def test_the_wait_timeout_and_no_inline_images_flags(server: Server, key: str,
                                                     tmp_path: Path) -> None:
    with stdio_user(server.base_url, key, tmp_path / "wait.log", "--wait-timeout", "0.5",
                    "--no-inline-images") as lean:
        # past the wait: a tool error naming the task, which goes on
        result = lean.call("generate_image", {"prompt": "[sandbox:delay=3] a slow fox"})
        assert result.is_error
        body = structured(result)
        assert body["state"] == "processing" and len(body["taskId"]) == 32
        assert f"task {body['taskId']} did not end within 0.5 s" in text_of(result)
        assert "get_task" in text_of(result)
        assert not lean.call("cancel_task", {"task_id": body["taskId"]}).is_error
        # in time: the URLs without the images
        result = lean.call("generate_image", {"prompt": "a quick fox"})
        [url] = succeeded(result)["resultUrls"]
        assert images_of(result) == [] and url in text_of(result)


def test_a_service_that_cannot_be_reached_is_a_tool_error() -> None:
    # The tools in this process, over the mcp SDK's in-memory transport; nothing listens on
    # the port.
    tools = Tools(AsyncClient(f"http://127.0.0.1:{free_port()}", "ig_x", max_retries=0),
                  wait_timeout=5)

    async def calls() -> list[CallToolResult]:
        async with Client(build(tools)) as client:
            return [await client.call_tool("get_balance", {}),
                    await client.call_tool("generate_image", {"prompt": "a fox"})]

    for result in anyio.run(calls):
        assert result.is_error and "cannot reach the service" in text_of(result)


def test_streamable_http_serves_the_same_tools(server: Server, key: str,
                                               tmp_path: Path) -> None:
    with http_server(server.base_url, key, tmp_path / "http.log") as url, \
            http_user(url) as remote:
        assert set(remote.tools()) == TOOLS
        result = remote.call("generate_image", {"prompt": "a fox over http",
                                                "aspect_ratio": "9:16"}, progress=True)
        [image] = images_of(result)
        assert image.size == (768, 1376) and not result.is_error
        assert remote.notices


def test_without_a_base_url_it_stops_naming_the_setting(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imagegate.cli", "mcp"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "IMAGEGATE_BASE_URL" in proc.stderr
    assert "--base-url" in proc.stderr and proc.stdout == ""


def test_without_the_mcp_sdk_it_names_the_install_command(tmp_path: Path) -> None:
    # The SDK hidden as if it were not installed.
    script = ("import sys; sys.modules['mcp'] = None; from imagegate.cli import main; "
              "sys.exit(main(['mcp', '--base-url', 'http://127.0.0.1:9', '--api-key', 'k']))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "pip install 'imagegate[mcp]'" in proc.stderr and "Traceback" not in proc.stderr

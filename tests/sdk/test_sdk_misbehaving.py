"""The client against servers that misbehave (fakes/rogue_api.py on loopback): garbage in the event
stream, streams that never end, a server that goes away during a wait and comes back, a proxy's
HTML error pages. Each on Client and AsyncClient."""

from __future__ import annotations

import asyncio
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from fakes.rogue_api import (
    Handler,
    RogueApi,
    answer,
    done,
    envelope,
    events,
    hang_up,
    rogue_api,
    sse,
    task,
)
from imagegate_client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    Client,
    GeneratedImage,
    ServerError,
    TaskStatus,
    WaitTimeout,
)
from sdk_clients import make_client

KINDS = ["sync", "async"]
SUBMITTED = answer(200, envelope({"taskId": "t1"}))
HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
            b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
            b"</html>\r\n")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("garbage", [
    sse("status", "{not json"),
    sse("status", [1, 2]),
    sse("done", [1, 2]),
    sse("done", {"code": 200, "data": "no task"}),
])
def test_an_unreadable_event_is_a_server_error(kind: str, garbage: bytes) -> None:
    with rogue_api({"streamTask": events(garbage)}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(ServerError) as raised:
                client.wait("t1", timeout=30)
        finally:
            client.close()
    assert "event" in str(raised.value) or "task" in str(raised.value)


@pytest.mark.parametrize("kind", KINDS)
def test_the_wait_timeout_holds_while_the_stream_keeps_sending_keep_alives(kind: str) -> None:
    # Keep-alives for 10 s, then the task succeeds: a wait of 0.5 s must not see that.
    stream = events(done(), keep_alive=200, every=0.05)
    with rogue_api({"streamTask": stream}) as api:
        client = make_client(kind, api.base_url, "k")
        try:
            with pytest.raises(WaitTimeout) as raised:
                client.wait("t1", timeout=0.5)
        finally:
            client.close()
    assert raised.value.task_id == "t1"


@pytest.mark.parametrize("kind", KINDS)
def test_a_wait_rides_out_a_server_gone_for_a_while_and_submits_once(kind: str) -> None:
    # The server is killed and restarted while the task runs: connections dropped, a proxy's
    # 502 page, a 503 while it starts; then the stream again.
    outage = [events(b"retry: 10\n\n", sse("status", task(), "1")), hang_up, hang_up,
              answer(502, HTML_502, "text/html"),
              answer(503, {"code": 503, "message": "starting", "data": {"error": "starting"}}),
              hang_up, events(done())]
    with rogue_api({"generateTask": SUBMITTED, "streamTask": outage}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            generation = client.generate("a fox", timeout=60)
        finally:
            client.close()
        assert generation.task.succeeded and generation.task.task_id == "t1"
        assert api.calls("generateTask") == 1 and api.calls("streamTask") == 7
        streams = [h for _, path, h in api.requests if "streamTask" in path]
        assert streams[-1]["last-event-id"] == "1"


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_stays_down_ends_the_wait_at_its_timeout_naming_the_task(kind: str,
                                                                               ) -> None:
    with rogue_api({"generateTask": SUBMITTED, "streamTask": hang_up}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(APIConnectionError) as raised:
                client.generate("a fox", timeout=0.5)
        finally:
            client.close()
        assert api.calls("generateTask") == 1
    assert raised.value.task_id == "t1"


@pytest.mark.parametrize("kind", KINDS)
def test_a_proxy_html_error_page_becomes_its_title(kind: str) -> None:
    with rogue_api({"statusTask": answer(502, HTML_502, "text/html")}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=1)
        try:
            with pytest.raises(ServerError) as raised:
                client.status("t1")
        finally:
            client.close()
    assert raised.value.status == 502 and raised.value.message == "502 Bad Gateway"
    assert raised.value.body == HTML_502.decode()


def test_saving_into_a_directory_that_does_not_exist_creates_it(tmp_path: Path) -> None:
    image = GeneratedImage("http://x/files/t1/image-0.png", b"\x89PNG\r\n\x1a\n", "image/png")
    assert image.save(tmp_path / "new") == tmp_path / "new"  # no slash: a file
    written = image.save(f"{tmp_path}/out/")
    assert written == tmp_path / "out" / "image-0.png" and written.read_bytes() == image.data
    nested = image.save(tmp_path / "a" / "b" / "fox.png")
    assert nested.read_bytes() == image.data


@pytest.mark.parametrize(("url", "name"), [
    ("http://x/files/..%2F..%2Fpwned.png", "pwned.png"),
    ("http://x/files/..%5C..%5Cpwned.png", "pwned.png"),
    ("http://x/files/sub%2Fpwned.png", "pwned.png"),
    ("http://x/files/..", "image.png"),
    ("http://x/files/%2E%2E", "image.png"),
    ("http://x/files/.", "image.png"),
])
def test_an_image_url_naming_a_path_is_saved_inside_the_directory(
        tmp_path: Path, url: str, name: str) -> None:
    inside = tmp_path / "a" / "b"
    inside.mkdir(parents=True)
    written = GeneratedImage(url, b"\x89PNG\r\n\x1a\n", "image/png").save(inside)
    assert written == inside / name and written.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [name]


def garbled_gzip(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Encoding", "gzip")
    h.send_header("Content-Length", "5")
    h.end_headers()
    h.wfile.write(b"junk!")


def redirect_to_itself(h: BaseHTTPRequestHandler) -> None:
    h.send_response(302)
    h.send_header("Location", h.path)
    h.send_header("Content-Length", "0")
    h.end_headers()


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_that_cannot_be_decoded_or_redirects_forever_is_a_connection_error(
        kind: str) -> None:
    routes = {"statusTask": garbled_gzip, "streamTask": garbled_gzip,
              "/files/loop.png": redirect_to_itself}
    with rogue_api(routes) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(APIConnectionError, match="DecodingError"):
                client.status("t1")
            with pytest.raises(APIConnectionError, match="DecodingError"):
                client.wait("t1", timeout=0.3)
            with pytest.raises(APIConnectionError, match="TooManyRedirects"):
                client.download(api.base_url + "/files/loop.png")
        finally:
            client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_wait_through_an_outage_keeps_to_the_servers_retry_after(kind: str) -> None:
    # Told to come back in an hour, a wait of half a second asks once and gives up at its end.
    draining = answer(503, {"code": 503, "message": "draining", "data": {"error": "draining"}},
                      headers=[("Retry-After", "3600")])
    with rogue_api({"streamTask": draining}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(ServerError) as raised:
                client.wait("t1", timeout=0.5)
        finally:
            client.close()
        assert api.calls("streamTask") == 1
    assert raised.value.status == 503 and raised.value.task_id == "t1"


def test_calls_beyond_the_connection_pool_wait_for_a_connection_not_fail() -> None:
    # One connection, held by a wait's stream for a while: a status read meanwhile waits for
    # it, however much longer than the request timeout that takes.
    async def scenario(api: RogueApi) -> tuple[TaskStatus, TaskStatus]:
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
        async with AsyncClient(api.base_url, "k", transport=transport, timeout=0.2,
                               max_retries=0) as client:
            streaming = asyncio.Event()
            waiting = asyncio.create_task(client.wait(
                "t1", timeout=30, on_progress=lambda _: streaming.set()))
            await streaming.wait()
            now = await client.status("t1")
            return now, await waiting

    stream = events(done(), opening=sse("status", task(), "1"), keep_alive=40, every=0.025)
    with rogue_api({"streamTask": stream, "statusTask": answer(200, envelope(task()))}) as api:
        now, ended = asyncio.run(scenario(api))
    assert now.state == "processing" and ended.succeeded


@pytest.mark.timeout(30)
def test_a_generate_needs_no_second_connection_after_its_stream() -> None:
    # The stream's connection is given back once the task has ended, before the downloads.
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64

    def finished(api: RogueApi) -> bytes:
        urls = json.dumps({"resultUrls": [api.base_url + "/files/t1.png"]})
        return done(resultJson=urls)

    stream: list[Handler] = []
    routes = {"generateTask": SUBMITTED, "streamTask": stream,
              "/files/t1.png": answer(200, png, "image/png")}
    with rogue_api(routes) as api:
        stream.append(events(finished(api)))
        transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
        with Client(api.base_url, "k", transport=transport, max_retries=0) as client:
            generation = client.generate("a fox", timeout=10)
    assert generation.images[0].data == png


def moved_to_https(h: BaseHTTPRequestHandler) -> None:
    page = b"<html><head><title>301 Moved Permanently</title></head></html>"
    h.send_response(301)
    h.send_header("Location", "https://api.example.test" + h.path)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", str(len(page)))
    h.end_headers()
    h.wfile.write(page)


@pytest.mark.parametrize("kind", KINDS)
def test_an_api_that_redirects_says_where_to(kind: str) -> None:
    # http:// to a server that moved to https://: the key is not sent after a redirect.
    with rogue_api({"generateTask": moved_to_https, "streamTask": moved_to_https,
                    "statusTask": moved_to_https}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(APIError) as submitted:
                client.submit("a fox")
            with pytest.raises(APIError) as waited:
                client.wait("t1", timeout=5)
        finally:
            client.close()
    for raised in (submitted.value, waited.value):
        assert raised.status == 301 and "https://api.example.test/api/v1/" in raised.message


def test_a_coroutine_callback_on_the_blocking_client_is_refused_clearly() -> None:
    # A Client cannot await it: it would be dropped, never run, with only a warning at exit.
    async def show(progress: object) -> None:
        pass

    with rogue_api({"streamTask": events(done())}) as api:
        with Client(api.base_url, "k") as client:
            with pytest.raises(TypeError, match="AsyncClient"):
                client.wait("t1", timeout=5, on_progress=show)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_line_without_end_is_a_server_error_not_a_growing_buffer(kind: str) -> None:
    endless = b"data: " + b"x" * (2 << 20)  # 2 MiB and no line end yet
    with rogue_api({"streamTask": events(endless, b"\n\n", done())}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            with pytest.raises(ServerError, match="line"):
                client.wait("t1", timeout=30)
        finally:
            client.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_a_waits_retries_keep_to_its_timeout(kind: str) -> None:
    # Each request's own retries would sleep 5 s and more: a wait of half a second tries once,
    # and once more at its end.
    with rogue_api({"streamTask": hang_up}) as api:
        client = make_client(kind, api.base_url, "k", retry_base_delay=10)
        try:
            with pytest.raises(APIConnectionError):
                client.wait("t1", timeout=0.5)
        finally:
            client.close()
        assert api.calls("streamTask") == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_inside_an_event_resumes_from_the_last_whole_one(kind: str) -> None:
    # The first stream ends halfway through its second event: that half is dropped, and the
    # stream is opened again from the id of the last event received whole.
    half = sse("status", task(stage="generating"), "e2")[:-12]
    first = events(b"retry: 10\n" + sse("status", task(stage="queued"), "e1") + half)
    with rogue_api({"streamTask": [first, events(done())]}) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            finished = client.wait("t1", timeout=30)
        finally:
            client.close()
    assert finished.succeeded
    resumed = [headers.get("last-event-id") for _, path, headers in api.requests
               if "streamTask" in path]
    assert resumed == [None, "e1"]


MODEL = {"id": "m", "aspectRatios": [], "resolutions": [], "outputFormats": [],
         "maxPromptChars": 0, "maxReferences": 0, "maxImages": 0, "prices": {},
         "googleSearch": False, "sandbox": True}


@pytest.mark.parametrize("kind", KINDS)
def test_answers_beyond_the_services_own_limits_are_read_not_refused(kind: str) -> None:
    # A server may raise its limits (a longer page, a longer source) or list a model it has
    # nothing of yet; the answers keep their meaning, and a client must not refuse them.
    listed = [task(f"t{i}", source="s" * 300, completeTime=None) for i in range(150)]
    routes: dict[str, Handler | list[Handler]] = {
        "tasks": answer(200, envelope({"tasks": listed, "nextCursor": None})),
        "models": answer(200, envelope({"models": [MODEL]})),
        "streamTask": events(sse("status", task(stage="queued", queuePosition=0), "e1"),
                             done()),
    }
    seen: list[int | None] = []
    with rogue_api(routes) as api:
        client = make_client(kind, api.base_url, "k", max_retries=0)
        try:
            page = client.list_tasks()
            models = client.models()
            client.wait("t1", timeout=30, on_progress=lambda p: seen.append(p.queue_position))
        finally:
            client.close()
    assert len(page.tasks) == 150 and page.tasks[0].source == "s" * 300
    assert page.tasks[0].complete_time is None
    assert models[0].aspect_ratios == () and models[0].max_images == 0
    assert seen[0] == 0

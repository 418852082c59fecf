"""The client against real servers on loopback: an ``imagegate serve`` process (sandbox route)
and the fake APIXO of tests/fakes. Each scenario runs on Client and on AsyncClient."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes.apixo_server import ApixoServer, Fail, Never, SubmitError, Succeed, apixo_server
from imagegate_client import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    Progress,
    RateLimited,
    TaskFailed,
    WaitTimeout,
)
from PIL import Image
from sdk_clients import losing_transport, make_client, recording_transport
from serverproc import Server

pytestmark = pytest.mark.slow
KINDS = ["sync", "async"]


@pytest.fixture
def apixo() -> Iterator[ApixoServer]:
    with apixo_server() as fake:
        yield fake


def fox_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


# One code, two servers ------------------------------------------------------------------------


def generate_read_and_fail(base_url: str, api_key: str, kind: str) -> None:
    """What a program written for APIXO does; only base URL and key tell the servers apart."""
    client = make_client(kind, base_url, api_key)
    try:
        generation = client.generate("a red fox", aspect_ratio="4:3", resolution="1k")
        image = generation.images[0]
        assert generation.task.succeeded and image.media_type == "image/png"
        assert fox_size(image.data) == (1200, 896)
        assert client.download(image.url) == image.data
        status = client.status(generation.task.task_id)
        assert status.state == "success" and status.result_urls == generation.task.result_urls
        with pytest.raises(TaskFailed) as failed:
            client.generate("[sandbox:fail=SensitiveContent] a red fox", aspect_ratio="1:1")
        assert failed.value.fail_code == "SensitiveContent" and failed.value.fail_msg
        with pytest.raises(InvalidRequest) as invalid:
            client.submit("a red fox", aspect_ratio="7:5")
        assert invalid.value.field == "input.aspect_ratio" and invalid.value.status == 400
        with pytest.raises(NotFound):
            client.status("0" * 32)
    finally:
        client.close()
    stranger = make_client(kind, base_url, "not-a-key")
    try:
        with pytest.raises(AuthenticationError):
            stranger.submit("a red fox")
    finally:
        stranger.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["imagegate", "apixo"])
def test_the_same_code_runs_against_imagegate_and_apixo(
        target: str, kind: str, server: Server, apixo: ApixoServer) -> None:
    if target == "apixo":
        apixo.script([Succeed(polls=1), Fail("SensitiveContent", polls=1)])
        generate_read_and_fail(apixo.base_url, apixo.api_key, kind)
        assert apixo.polls and all(n >= 1 for n in apixo.polls.values())
    else:
        generate_read_and_fail(server.base_url, server.new_key("1"), kind)


# Against the fake APIXO: polling, retries --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_apixo_is_polled_after_the_stream_is_refused(kind: str, apixo: ApixoServer) -> None:
    apixo.script([Succeed(polls=3, flaky_polls=1)])
    seen: list[Progress] = []
    client = make_client(kind, apixo.base_url, apixo.api_key)
    try:
        generation = client.generate("a fox", aspect_ratio="1:1", on_progress=seen.append)
    finally:
        client.close()
    paths = [h.get("accept") for h in apixo.headers]
    assert paths[1] == "text/event-stream"  # asked for the stream once, then polled
    assert apixo.polls[generation.task.task_id] == 5  # a 503 retried, 3 processing, success
    assert [p.state for p in seen] == ["processing", "success"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_rate_limited_submit_is_retried_after_retry_after_with_the_same_key(
        kind: str, apixo: ApixoServer) -> None:
    apixo.script([SubmitError(429, retry_after=0.2), SubmitError(503), Succeed()])
    client = make_client(kind, apixo.base_url, apixo.api_key)
    try:
        task_id = client.submit("a fox", aspect_ratio="1:1")
    finally:
        client.close()
    keys = [h["idempotency-key"] for h in apixo.headers]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert apixo.task_ids == [task_id]


@pytest.mark.parametrize("kind", KINDS)
def test_errors_after_the_retries_are_raised(kind: str, apixo: ApixoServer) -> None:
    apixo.script([SubmitError(429, retry_after=0.01)] * 3)
    client = make_client(kind, apixo.base_url, apixo.api_key, max_retries=2)
    try:
        with pytest.raises(RateLimited) as limited:
            client.submit("a fox")
        assert limited.value.retry_after == 0.01 and len(apixo.submits) == 3
        apixo.script([Never()])
        with pytest.raises(WaitTimeout):
            client.wait(client.submit("a fox"), timeout=0.5)
    finally:
        client.close()
    closed = make_client(kind, "http://127.0.0.1:9", "key", max_retries=1)
    try:
        with pytest.raises(APIConnectionError):
            closed.balance()
    finally:
        closed.close()


# Against imagegate: every method ---------------------------------------------------------------

Scenario = Callable[[Server, str], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def progress_is_reported_until_the_end(server: Server, kind: str) -> None:
    seen: list[Progress] = []
    client = make_client(kind, server.base_url, server.new_key("1"))
    try:
        generation = client.generate("[sandbox:delay=1] a fox", aspect_ratio="1:1",
                                     on_progress=seen.append)
    finally:
        client.close()
    assert generation.task.stage == "done" and len(generation.images) == 1
    assert seen[-1].state == "success" and seen[0].state == "processing"
    assert all(p.task_id == generation.task.task_id for p in seen)
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)


@scenario
def cancel_refunds_the_task(server: Server, kind: str) -> None:
    client = make_client(kind, server.base_url, server.new_key("1"))
    try:
        task_id = client.submit("[sandbox:delay=60] a slow fox", aspect_ratio="1:1")
        cancellation = client.cancel(task_id)
        assert cancellation.task_id == task_id
        assert cancellation.state in ("canceled", "cancelling")
        with pytest.raises(TaskFailed) as failed:
            client.wait(task_id, timeout=30)
        assert failed.value.fail_code == "Canceled"
        assert client.balance() == Decimal("1")
    finally:
        client.close()


@scenario
def tasks_are_listed_page_by_page(server: Server, kind: str) -> None:
    client = make_client(kind, server.base_url, server.new_key("1"))
    try:
        made = [client.submit(f"fox {n}", aspect_ratio="1:1", source="sdk-test")
                for n in range(5)]
        page = client.list_tasks(limit=2)
        assert len(page.tasks) == 2 and page.next_cursor is not None
        listed = [task.task_id for task in client.iter_tasks(limit=2)]
        assert listed == made[::-1]
        assert all(t.source == "sdk-test" for t in page.tasks)
        client.wait(made[0], timeout=30)
        finished = client.list_tasks(state=["success", "failed"], model="nano-banana-2")
        assert made[0] in {t.task_id for t in finished.tasks}
    finally:
        client.close()


@scenario
def balance_and_models_are_read(server: Server, kind: str) -> None:
    client = make_client(kind, server.base_url, server.new_key("2.5"))
    try:
        assert client.balance() == Decimal("2.5")
        models = {m.id: m for m in client.models()}
        banana = models["nano-banana-2"]
        assert banana.prices == {"1k": Decimal("0.05"), "2k": Decimal("0.08"),
                                 "4k": Decimal("0.12")}
        assert "16:9" in banana.aspect_ratios and banana.resolutions == ("1k", "2k", "4k")
        assert banana.max_references == 14 and banana.sandbox
    finally:
        client.close()


@scenario
def request_errors_are_typed(server: Server, kind: str) -> None:
    poor = make_client(kind, server.base_url, server.new_key("0.01"))
    try:
        with pytest.raises(InsufficientBalance) as refused:
            poor.submit("a fox")
        assert refused.value.status == 402
        with pytest.raises(InvalidRequest) as invalid:
            poor.submit("a fox", num_images=9)
        assert invalid.value.field == "input.num_images"
        with pytest.raises(InvalidRequest) as empty:
            poor.submit("   ")
        assert empty.value.field == "input.prompt"
    finally:
        poor.close()
    stranger = make_client(kind, server.base_url, "ig_not_a_key")
    try:
        with pytest.raises(AuthenticationError) as unknown:
            stranger.balance()
        assert unknown.value.status == 401
    finally:
        stranger.close()


@scenario
def failed_tasks_carry_their_code(server: Server, kind: str) -> None:
    client = make_client(kind, server.base_url, server.new_key("1"))
    try:
        with pytest.raises(TaskFailed) as failed:
            client.generate("[sandbox:fail=PromptInvalid] a fox")
        assert failed.value.fail_code == "PromptInvalid"
        assert failed.value.task.state == "failed"
        healed = client.generate("[sandbox:fail=RateLimited:1] a fox")  # the service retries
        assert healed.task.succeeded
        slow = client.submit("[sandbox:delay=60] a fox")
        with pytest.raises(WaitTimeout) as late:
            client.wait(slow, timeout=0.5)
        assert late.value.task_id == slow
        client.cancel(slow)
    finally:
        client.close()


@scenario
def a_submit_whose_answer_was_lost_is_charged_once(server: Server, kind: str) -> None:
    transport = losing_transport(kind)
    client = make_client(kind, server.base_url, server.new_key("1"), transport=transport)
    try:
        task_id = client.submit("a fox", aspect_ratio="1:1")
        assert transport.lost == 1
        client.wait(task_id, timeout=30)
        assert [t.task_id for t in client.iter_tasks()] == [task_id]
        assert client.balance() == Decimal("0.95")
    finally:
        client.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_imagegate(name: str, kind: str, server: Server) -> None:
    SCENARIOS[name](server, kind)


def test_generated_images_are_saved_under_their_url_name(server: Server, tmp_path: Any) -> None:
    client = make_client("sync", server.base_url, server.new_key("1"))
    try:
        generation = client.generate("two foxes", aspect_ratio="16:9", output_format="jpeg",
                                     num_images=2)
    finally:
        client.close()
    saved = [image.save(tmp_path) for image in generation.images]
    assert [p.name for p in saved] == ["image-0.jpeg", "image-1.jpeg"]
    assert all(fox_size(p.read_bytes()) == (1376, 768) for p in saved)
    assert generation.images[0].save(tmp_path / "mine.jpg").name == "mine.jpg"
    assert generation.images[0].media_type == "image/jpeg"


def test_async_progress_callbacks_may_be_coroutines(apixo: ApixoServer) -> None:
    apixo.script([Succeed(polls=1)])
    seen: list[str] = []

    async def record(progress: Progress) -> None:
        await asyncio.sleep(0)
        seen.append(progress.state)

    async def main() -> None:
        async with AsyncClient(apixo.base_url, apixo.api_key, poll_interval=0.05) as client:
            generation = await client.generate("a fox", on_progress=record)
            assert generation.images[0].data.startswith(b"\x89PNG")

    asyncio.run(main())
    assert seen == ["processing", "success"]


# A server killed and restarted under a wait -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_generate_outlasts_a_server_killed_and_restarted_and_submits_once(
        kind: str, tmp_path: Path) -> None:
    # A lease of 2 s: the task the killed worker held runs again soon after the restart.
    srv = Server(tmp_path, env={"IMAGEGATE_WORKER_LEASE_SECONDS": "2"}).start()
    key = srv.new_key("1")
    generating = threading.Event()
    outcome: list[Any] = []
    transport = recording_transport(kind)

    def streams() -> int:
        return sum(1 for r in list(transport.requests) if "streamTask" in r.url.path)

    def user() -> None:
        client = make_client(kind, srv.base_url, key, transport=transport)
        try:
            outcome.append(client.generate(
                "[sandbox:delay=2] a fox", aspect_ratio="1:1", timeout=120,
                on_progress=lambda p: p.stage == "generating" and generating.set()))
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)
        finally:
            client.close()

    thread = threading.Thread(target=user)
    thread.start()
    try:
        assert generating.wait(60)
        before = streams()
        srv.kill9()
        # Down until the stream's reopening has failed more than its request's retries.
        while streams() < before + 6 and thread.is_alive():
            time.sleep(0.05)
        srv.start()
        thread.join(120)
        generation = outcome[0]
        assert not isinstance(generation, BaseException), generation
        assert generation.task.succeeded and generation.images[0].data
        with srv.client(key) as http:
            tasks = http.get("/api/v1/tasks").json()["data"]["tasks"]
        assert [t["taskId"] for t in tasks] == [generation.task.task_id]
    finally:
        srv.stop()

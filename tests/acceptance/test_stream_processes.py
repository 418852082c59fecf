"""Streaming a task across processes on PostgreSQL (docs/contract.md §15, "Extension: streaming
a task"): a task submitted through one `imagegate api`, streamed from another while a separate
`imagegate worker` runs it, every stage arriving through LISTEN/NOTIFY; a stream cut off and
resumed with Last-Event-ID; a stream that ends when its server shuts down; and one whose
worker is killed mid-attempt, which shows the task waiting for its retry, then the second
attempt to its end.

The sandbox route waits ``DELAY_S`` before it answers, so the worker is still on the task when
the stream opens; the stream shows each stage however fast the worker moves through the
others (each comes with its progress note)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgres_db import fresh_database
from serverproc import Loops, Server, cli, t2i

pytestmark = pytest.mark.slow

SUBMIT = "/api/v1/generateTask/nano-banana-2"
STATUS = "/api/v1/statusTask/nano-banana-2"
STREAM = "/api/v1/streamTask/nano-banana-2"
DELAY_S = "1.5"
READ_S = 60.0  # far longer than the task takes: a stream that ends in time was fed by events

Message = dict[str, Any]


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    with fresh_database() as url:
        yield {"IMAGEGATE_DATABASE_URL": url, "IMAGEGATE_WORKER_POLL_SECONDS": "0.2",
               "IMAGEGATE_SANDBOX_DELAY_SECONDS": DELAY_S}


def messages(response: httpx.Response) -> Iterator[Message]:
    """The stream's messages as they arrive (``data`` decoded, ``raw`` as sent)."""
    message: Message = {}
    for line in response.iter_lines():
        if not line:
            if message:
                yield message
            message = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not name:
            message["comment"] = value
        elif name == "data":
            message["data"], message["raw"] = json.loads(value), value
        else:
            message[name] = value


def stream(client: httpx.Client, task_id: str, last_event_id: str | None = None,
           ) -> Any:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return client.stream("GET", STREAM, params={"taskId": task_id}, headers=headers,
                         timeout=httpx.Timeout(READ_S))


def test_a_task_submitted_on_one_api_streams_every_stage_from_another(
        tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "d"
    cli(data, "migrate", env=env)
    key = cli(data, "keys", "create", "--credit", "10", env=env).stdout.split()[-1]
    a = Server(data, env=env, command="api").start()
    b = Server(data, env=env, command="api").start()
    worker = Loops(data, "worker", env=env)
    try:
        with a.client(key) as ca, b.client(key) as cb:
            task_id = ca.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            with stream(cb, task_id) as r:
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/event-stream"
                seen = messages(r)
                first = next(seen)
                worker.start()
                rest = list(seen)
            final = cb.get(STATUS, params={"taskId": task_id})
    finally:
        if worker.proc is not None:
            worker.stop()
        a.stop()
        b.stop()
    assert first["retry"] == "1000"
    assert (first["data"]["stage"], first["data"]["queuePosition"]) == ("queued", 1)
    events = [m for m in rest if "comment" not in m]
    assert [m["data"]["stage"] for m in events[:-1]] == ["running", "generating", "storing"]
    assert events[-1]["event"] == "done"
    assert events[-1]["raw"].encode() == final.content
    assert final.json()["data"]["state"] == "success"


def test_a_stream_cut_off_resumes_with_its_last_event_id(
        tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "d"
    cli(data, "migrate", env=env)
    key = cli(data, "keys", "create", "--credit", "10", env=env).stdout.split()[-1]
    a = Server(data, env=env, command="api").start()
    worker = Loops(data, "worker", env=env)
    try:
        with a.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            with stream(c, task_id) as r:
                seen = next(messages(r))  # then the connection is closed
            worker.start()
            with stream(c, task_id, last_event_id=seen["id"]) as r:
                resumed = list(messages(r))
    finally:
        if worker.proc is not None:
            worker.stop()
        a.stop()
    assert seen["data"]["stage"] == "queued"
    assert seen["id"] not in {m.get("id") for m in resumed}
    assert resumed[-1]["event"] == "done"
    assert resumed[-1]["data"]["data"]["state"] == "success"


def test_a_stream_ends_when_its_server_shuts_down(
        tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "d"
    cli(data, "migrate", env=env)
    key = cli(data, "keys", "create", "--credit", "10", env=env).stdout.split()[-1]
    a = Server(data, env=env, command="api").start()
    try:
        with a.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            with stream(c, task_id) as r:
                seen = messages(r)
                assert next(seen)["data"]["stage"] == "queued"
                assert a.proc is not None
                os.killpg(a.proc.pid, signal.SIGTERM)
                # The server ends the stream properly (a process that died would cut it off
                # mid-body: RemoteProtocolError); its client would reconnect elsewhere.
                rest = list(seen)
            assert a.proc.wait(READ_S) == 0
    finally:
        a.stop()
    assert rest == []


def test_a_stream_shows_the_retry_when_its_worker_is_killed_and_then_the_end(
        tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "d"
    env = {**env, "IMAGEGATE_WORKER_LEASE_SECONDS": "1"}  # the sweeper requeues it soon
    cli(data, "migrate", env=env)
    key = cli(data, "keys", "create", "--credit", "10", env=env).stdout.split()[-1]
    api = Server(data, env=env, command="api").start()
    sweeper = Loops(data, "sweeper", env=env).start()
    worker = Loops(data, "worker", env={**env, "IMAGEGATE_SANDBOX_DELAY_SECONDS": "60"})
    again = Loops(data, "worker", env=env)
    try:
        with api.client(key) as c:
            task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
            with stream(c, task_id) as r:
                seen = (m for m in messages(r) if "comment" not in m)
                worker.start()
                shown = [next(seen)]
                while shown[-1]["data"].get("stage") != "generating":
                    shown.append(next(seen))
                worker.kill9()  # mid-attempt: its lease runs out, unrenewed
                while shown[-1]["data"].get("stage") != "retrying":
                    shown.append(next(seen))
                again.start()
                shown += list(seen)
    finally:
        for loops in (worker, again, sweeper):
            if loops.proc is not None:
                loops.stop()
        api.stop()
    ids = [m["id"] for m in shown]
    assert ids.index("1.generating") < [i.startswith("1.retrying") for i in ids].index(True)
    assert ids[-4:] == ["2.running", "2.generating", "2.storing", "2.done"], ids
    assert shown[-1]["data"]["data"]["state"] == "success"

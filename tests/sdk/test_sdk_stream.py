"""Waiting over imagegate's event stream (streamTask): progress with queue positions, no
polling, and a cut stream resumed from its last event. Each on Client and AsyncClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imagegate_client import Progress
from sdk_clients import make_client, recording_transport
from serverproc import Server

pytestmark = pytest.mark.slow
KINDS = ["sync", "async"]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that runs one task at a time, so that the next one waits in the queue."""
    srv = Server(tmp_path_factory.mktemp("stream"),
                 env={"IMAGEGATE_WORKER_CONCURRENCY": "1"}).start()
    yield srv
    srv.stop()


def paths(transport: object) -> list[str]:
    return [r.url.path.split("/")[3] for r in transport.requests]


@pytest.mark.parametrize("kind", KINDS)
def test_progress_follows_the_queue_and_the_stages_over_the_stream(
        kind: str, one_worker: Server) -> None:
    transport = recording_transport(kind)
    # Polling would wait 1000 s: the wait can only end in time through the stream.
    client = make_client(kind, one_worker.base_url, one_worker.new_key("1"),
                         transport=transport, poll_interval=1000)
    seen: list[Progress] = []
    try:
        blocker = client.submit("[sandbox:delay=1.5] the task ahead", aspect_ratio="1:1")
        generation = client.generate("[sandbox:delay=0.3] a fox", aspect_ratio="1:1",
                                     on_progress=seen.append, timeout=60)
        client.wait(blocker, timeout=60)
    finally:
        client.close()
    assert generation.task.succeeded and generation.images[0].data
    queued = [p for p in seen if p.stage == "queued"]
    assert queued and queued[-1].queue_position == 1
    assert all(p.queue_position is None for p in seen if p.stage != "queued")
    assert [p.state for p in seen][-1] == "success" and seen[-1].stage == "done"
    stages = [p.stage for p in seen]
    assert stages.index("queued") < stages.index("done")
    assert "statusTask" not in paths(transport)


@pytest.mark.parametrize("kind", KINDS)
def test_a_cut_stream_is_resumed_from_its_last_event(kind: str, one_worker: Server) -> None:
    transport = recording_transport(kind, cut_first_stream=True)
    client = make_client(kind, one_worker.base_url, one_worker.new_key("1"),
                         transport=transport, poll_interval=1000)
    try:
        task_id = client.submit("[sandbox:delay=1] a fox", aspect_ratio="1:1")
        task = client.wait(task_id, timeout=60)
    finally:
        client.close()
    assert task.succeeded
    streams = [r for r in transport.requests if "streamTask" in r.url.path]
    assert len(streams) >= 2
    assert "last-event-id" not in streams[0].headers
    assert streams[1].headers["last-event-id"]


def test_waiting_for_an_unknown_task_is_not_found(one_worker: Server, tmp_path: Path) -> None:
    from imagegate_client import NotFound

    client = make_client("sync", one_worker.base_url, one_worker.new_key("1"))
    try:
        with pytest.raises(NotFound):
            client.wait("0" * 32, timeout=10)
    finally:
        client.close()

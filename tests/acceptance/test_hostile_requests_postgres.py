"""Text that PostgreSQL cannot hold, sent to a real server on PostgreSQL: a NUL character
(``%00`` in a query or path, ``\\u0000`` in JSON) in a task id is an unknown task (404) on every
endpoint that takes one, and in a submit's ``source`` a 400 naming it, as on SQLite; never a
500 from the database driver (``text fields cannot contain NUL``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from postgres_db import fresh_database
from serverproc import Server, cli, t2i

pytestmark = pytest.mark.slow

MODEL = "nano-banana-2"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with fresh_database() as url:
        env = {"IMAGEGATE_DATABASE_URL": url}
        srv = Server(tmp_path_factory.mktemp("pg"), env=env).start()
        try:
            key = cli(srv.data_dir, "keys", "create", "--credit", "10", env=env).stdout
            with srv.client(key.strip().splitlines()[-1]) as c:
                yield c
        finally:
            srv.stop()


@pytest.mark.parametrize("method,path", [
    ("GET", f"/api/v1/statusTask/{MODEL}?taskId=%00"),
    ("GET", f"/api/v1/statusTask/{MODEL}?taskId=ab%00cd&wait=1"),
    ("GET", f"/api/v1/streamTask/{MODEL}?taskId=%00"),
    ("HEAD", f"/api/v1/streamTask/{MODEL}?taskId=%00"),
    ("POST", f"/api/v1/cancelTask/{MODEL}?taskId=%00"),
    ("GET", "/api/v1/webhooks/deliveries?taskId=%00"),
    ("GET", "/files/%00/token/image-0.png"),
])
def test_a_task_id_holding_a_nul_is_an_unknown_task(client: httpx.Client, method: str,
                                                    path: str) -> None:
    r = client.request(method, path)
    assert r.status_code == 404, r.text
    # The other readers of the moment are not failed with it (reads are batched).
    task_id = client.post(f"/api/v1/generateTask/{MODEL}", json=t2i()).json()["data"]["taskId"]
    assert client.get(f"/api/v1/statusTask/{MODEL}",
                      params={"taskId": task_id}).status_code == 200


def test_a_source_holding_a_nul_is_refused_naming_it(client: httpx.Client) -> None:
    r = client.post(f"/api/v1/generateTask/{MODEL}", json={**t2i(), "source": "app\x00"})
    assert r.status_code == 400, r.text
    assert r.json()["data"]["field"] == "source"


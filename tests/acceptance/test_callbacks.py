"""Callback mode (docs/contract.md §12) against a real receiver on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from loopback import Received, loopback_server
from serverproc import Server, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("data"), env={
        "IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "0.3,0.3,0.3",
        "IMAGEGATE_CALLBACKS_MAX_ATTEMPTS": "4",
        "IMAGEGATE_CALLBACKS_TIMEOUT_SECONDS": "1",
    }).start()
    yield srv
    srv.stop()


def callback_body(url: str, prompt: str = "callback me") -> dict[str, object]:
    body = t2i(prompt)
    body.update(request_type="callback", callback_url=url)
    return body


def test_terminal_state_is_posted_as_the_exact_status_envelope(server: Server,
                                                               key: str) -> None:
    with loopback_server() as rx, server.client(key) as c:
        task_id = c.post(SUBMIT, json=callback_body(rx.base_url + "/hook")).json()["data"][
            "taskId"]
        status = wait_done(c, task_id)
        got = rx.wait_for(1)
    assert len(got) == 1
    assert got[0].path == "/hook"
    assert got[0].headers["content-type"] == "application/json"
    payload = json.loads(got[0].body)
    assert payload == {"code": 200, "message": "success", "data": status}
    assert got[0].headers["webhook-id"].startswith("msg_")


def test_failed_task_is_called_back_too(server: Server, key: str) -> None:
    with loopback_server() as rx, server.client(key) as c:
        c.post(SUBMIT, json=callback_body(rx.base_url + "/hook", "[sandbox:fail=Timeout:9] x"))
        got = rx.wait_for(1)
    data = json.loads(got[0].body)["data"]
    assert data["state"] == "failed" and data["failCode"] == "Timeout"


def test_receiver_errors_are_retried_with_the_same_event(server: Server, key: str) -> None:
    with loopback_server() as rx, server.client(key) as c:
        rx.answer = lambda r: (503, {}, 0.0) if len(rx.received) <= 2 else (204, {}, 0.0)
        c.post(SUBMIT, json=callback_body(rx.base_url + "/flaky"))
        got = rx.wait_for(3)
    assert len(got) == 3
    assert len({g.headers["webhook-id"] for g in got}) == 1
    assert len({g.body for g in got}) == 1


def test_redirect_is_not_followed_and_gives_up_after_max_attempts(server: Server,
                                                                  key: str) -> None:
    def redirect(r: Received) -> tuple[int, dict[str, str], float]:
        return 302, {"Location": "/elsewhere"}, 0.0

    with loopback_server() as rx, server.client(key) as c:
        rx.answer = redirect
        c.post(SUBMIT, json=callback_body(rx.base_url + "/moved"))
        rx.wait_for(4)
        rx.wait_for(5, timeout=2.0)  # a fifth attempt would show up here
    assert [g.path for g in rx.received] == ["/moved"] * 4  # never /elsewhere, 4 attempts


def test_https_is_required_unless_the_operator_allows_http(tmp_path, key: str) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_ALLOW_HTTP_CALLBACKS": "false"}).start()
    try:
        k = srv.new_key("1")
        with srv.client(k) as c:
            r = c.post(SUBMIT, json=callback_body("http://127.0.0.1:9/hook"))
    finally:
        srv.stop()
    assert r.status_code == 400
    assert r.json()["data"]["field"] == "callback_url"


def test_a_name_resolving_to_a_private_address_is_refused_at_submit(tmp_path, key: str) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false"}).start()
    try:
        with srv.client(srv.new_key("1")) as c:
            r = c.post(SUBMIT, json=callback_body("http://localhost:9/hook"))
    finally:
        srv.stop()
    assert r.status_code == 400
    assert r.json()["data"]["field"] == "callback_url"
    assert "not a public address" in r.text
    assert "127.0.0.1" not in r.text and "::1" not in r.text


def test_a_name_resolving_to_a_private_address_is_accepted_when_allowed(server: Server,
                                                                        key: str) -> None:
    with loopback_server() as rx, server.client(key) as c:
        url = rx.base_url.replace("127.0.0.1", "localhost") + "/named"
        r = c.post(SUBMIT, json=callback_body(url))
        assert r.status_code == 200, r.text
        wait_done(c, r.json()["data"]["taskId"])

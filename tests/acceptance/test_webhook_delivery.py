"""Webhooks people can trust: signed, retried, logged, redeliverable, surviving restarts.

Signatures are checked here by an implementation written from the Standard Webhooks text, not
by the package's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import Loopback, Received, loopback_server
from serverproc import Server, cli, free_port, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
ENV = {
    "IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "0.5",
    "IMAGEGATE_CALLBACKS_MAX_ATTEMPTS": "6",
    "IMAGEGATE_CALLBACKS_TIMEOUT_SECONDS": "1",
}


def signatures_valid(got: Received, secret: str) -> bool:
    """Standard Webhooks: base64(HMAC-SHA256(key=b64decode(secret sans whsec_),
    "{id}.{timestamp}.{body}")) among the space-separated "v1,<sig>" entries."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
    digest = hmac.new(key, signed + got.body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    return expected in got.headers["webhook-signature"].split(" ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("data"), env=ENV).start()
    yield srv
    srv.stop()


def submit_callback(server: Server, key: str, url: str, prompt: str = "hooked") -> str:
    body = t2i(prompt)
    body.update(request_type="callback", callback_url=url)
    with server.client(key) as c:
        r = c.post(SUBMIT, json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["taskId"])


def delivery_log(server: Server, key: str, task_id: str) -> list[dict]:
    with server.client(key) as c:
        r = c.get("/api/v1/webhooks/deliveries", params={"taskId": task_id})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])


def wait_log(server: Server, key: str, task_id: str, attempts: int,
             timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = delivery_log(server, key, task_id)
        if log and len(log[0]["log"]) >= attempts:
            return log[0]
        time.sleep(0.1)
    raise AssertionError(f"fewer than {attempts} attempts: {delivery_log(server, key, task_id)}")


def secret_of(server: Server, key: str) -> str:
    with server.client(key) as c:
        return str(c.get("/api/v1/webhooks/secret").json()["data"]["secrets"][0]["secret"])


def test_every_delivery_is_signed_with_the_accounts_secret(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx:
        task_id = submit_callback(server, key, rx.base_url + "/hook")
        [got] = rx.wait_for(1)
    secret = secret_of(server, key)
    assert secret.startswith("whsec_")
    assert signatures_valid(got, secret)
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    with server.client(key) as c:
        status = c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id}).json()
    assert json.loads(got.body) == status  # the body is the status envelope, byte for byte JSON


def test_receiver_down_then_up_gets_the_event_once_recognisably(server: Server) -> None:
    key = server.new_key("1")
    port = free_port()
    task_id = submit_callback(server, key, f"http://127.0.0.1:{port}/late")
    down = wait_log(server, key, task_id, 2)  # two attempts find nobody listening
    assert all(not a["delivered"] and "httpStatus" not in a for a in down["log"])
    with loopback_server(port) as rx:
        [got] = rx.wait_for(1)
        log = wait_log(server, key, task_id, 3)
    assert got.headers["webhook-id"] == down["webhookId"] == log["webhookId"]
    assert log["state"] == "delivered" and log["log"][-1]["httpStatus"] == 200
    assert signatures_valid(got, secret_of(server, key))


def test_redirect_is_recorded_not_followed(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx:
        rx.answer = lambda r: (307, {"Location": "https://elsewhere.example/x"}, 0.0)
        task_id = submit_callback(server, key, rx.base_url + "/moved")
        entry = wait_log(server, key, task_id, 1)["log"][0]
    assert entry["httpStatus"] == 307 and not entry["delivered"]
    assert "redirect" in entry["error"] and "not followed" in entry["error"]
    assert {r.path for r in rx.received} == {"/moved"}


def test_receiver_slower_than_the_timeout_is_a_failed_attempt(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx:
        rx.answer = lambda r: (200, {}, 2.5)
        task_id = submit_callback(server, key, rx.base_url + "/slow")
        entry = wait_log(server, key, task_id, 1)["log"][0]
    assert not entry["delivered"] and "no answer within 1 s" in entry["error"]


def test_manual_redelivery_sends_the_same_event_again(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx:
        task_id = submit_callback(server, key, rx.base_url + "/again")
        rx.wait_for(1)
        with server.client(key) as c:
            r = c.post("/api/v1/webhooks/redeliver", params={"taskId": task_id})
        assert r.status_code == 200, r.text
        first, second = rx.wait_for(2)
    assert r.json()["data"]["attempt"]["delivered"] is True
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert len(wait_log(server, key, task_id, 2)["log"]) == 2


def test_redelivery_of_a_task_without_callback_is_404(server: Server) -> None:
    key = server.new_key("1")
    with server.client(key) as c:
        task_id = c.post(SUBMIT, json=t2i()).json()["data"]["taskId"]
        wait_done(c, task_id)
        r = c.post("/api/v1/webhooks/redeliver", params={"taskId": task_id})
        other = server.new_key("1")
    assert r.status_code == 404
    with server.client(other) as c:
        assert c.get("/api/v1/webhooks/deliveries", params={"taskId": task_id}
                     ).status_code == 404


def test_test_event_is_signed_and_reports_the_answer(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx, server.client(key) as c:
        rx.answer = lambda r: (418, {}, 0.0)
        r = c.post("/api/v1/webhooks/test", json={"url": rx.base_url + "/probe"})
        [got] = rx.wait_for(1)
        missing = c.post("/api/v1/webhooks/test", json={})
    data = r.json()["data"]
    assert data["delivered"] is False and data["httpStatus"] == 418
    assert data["webhookId"] == got.headers["webhook-id"]
    assert json.loads(got.body)["data"]["test"] is True
    assert signatures_valid(got, secret_of(server, key))
    assert missing.status_code == 400 and missing.json()["data"]["field"] == "url"


def test_the_delivery_log_shows_the_url_without_its_credentials(server: Server) -> None:
    key = server.new_key("1")
    with loopback_server() as rx:
        url = rx.base_url.replace("http://", "http://user:secret@") + "/creds"
        task_id = submit_callback(server, key, url)
        [got] = rx.wait_for(1)
        entry = wait_log(server, key, task_id, 1)
    assert entry["url"] == rx.base_url + "/creds"
    assert "secret" not in json.dumps(entry)
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()


def test_a_test_event_does_not_say_what_an_internal_name_resolves_to(tmp_path: Path) -> None:
    srv = Server(tmp_path / "d", env={**ENV, "IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false"}).start()
    try:
        with srv.client(srv.new_key("1")) as c:
            r = c.post("/api/v1/webhooks/test",
                       json={"url": f"http://user:secret@localhost:{free_port()}/probe"})
    finally:
        srv.stop()
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["delivered"] is False
    assert data["error"] == "the host is not a public address"
    assert "127.0.0.1" not in r.text and "::1" not in r.text and "secret" not in r.text


def test_rotation_signs_with_both_secrets_during_the_overlap(server: Server) -> None:
    key = server.new_key("1")
    old = secret_of(server, key)
    with server.client(key) as c:
        rotated = c.post("/api/v1/webhooks/secret/rotate", json={"overlapSeconds": 3600})
    new = rotated.json()["data"]["secret"]
    assert new != old and len(rotated.json()["data"]["secrets"]) == 2
    with loopback_server() as rx:
        submit_callback(server, key, rx.base_url + "/rotating")
        [got] = rx.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert signatures_valid(got, old) and signatures_valid(got, new)
    with server.client(key) as c:
        c.post("/api/v1/webhooks/secret/rotate", json={"overlapSeconds": 0})
        live = c.get("/api/v1/webhooks/secret").json()["data"]["secrets"]
    assert len(live) == 1


def test_a_restart_between_attempts_loses_nothing(tmp_path: Path) -> None:
    env = {**ENV, "IMAGEGATE_CALLBACKS_RETRY_SCHEDULE": "3"}
    srv = Server(tmp_path / "d", env=env).start()
    key = srv.new_key("1")
    state = Loopback()
    state.answer = lambda r: (500, {}, 0.0) if len(state.received) == 1 else (204, {}, 0.0)
    try:
        with loopback_server(state=state) as rx:
            task_id = submit_callback(srv, key, rx.base_url + "/restart")
            wait_log(srv, key, task_id, 1)  # the failed first attempt is on record
            srv.kill9()
            srv = Server(tmp_path / "d", env=env).start()
            got = rx.wait_for(2, timeout=30)
            log = wait_log(srv, key, task_id, 2)
    finally:
        srv.stop()
    assert len(got) == 2 and got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    assert log["state"] == "delivered"
    assert [a.get("httpStatus") for a in log["log"]] == [500, 204]


def test_cli_shows_and_rotates_secrets(tmp_path: Path) -> None:
    cli(tmp_path, "migrate")
    made = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    first = cli(tmp_path, "webhooks", "secret", made["keyId"]).stdout.split()[0]
    assert first.startswith("whsec_")
    assert cli(tmp_path, "webhooks", "secret", made["accountId"]).stdout.split()[0] == first
    lines = cli(tmp_path, "webhooks", "secret", made["keyId"], "--rotate").stdout.splitlines()
    assert len(lines) == 2 and lines[0] != first and lines[1].startswith(first)
    assert "signs until" in lines[1]


def test_a_receiver_trickling_its_body_is_judged_on_its_status_and_not_read(
        server: Server) -> None:
    """The answer's body is never read: a receiver cannot hold the dispatcher with it."""
    import socket
    import threading

    sent: list[int] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        try:
            for _ in range(100):  # 10 bytes every 0.1 s: 10 s for the whole body
                conn.sendall(b"x" * 10)
                sent.append(10)
                time.sleep(0.1)
        except OSError:
            pass  # the client hung up, as it should
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    key = server.new_key("1")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/trickle"
    with server.client(key) as c:
        data = c.post("/api/v1/webhooks/test", json={"url": url}).json()["data"]
    thread.join(15)
    listener.close()
    assert data["delivered"] is True and data["httpStatus"] == 200
    assert sum(sent) < 1000  # the client hung up long before the body was complete

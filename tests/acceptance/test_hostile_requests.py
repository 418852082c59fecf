"""Malformed and hostile requests through HTTP against a real server: each is answered 4xx in
the contract's words, naming the field at fault where there is one, and never 5xx.

The server runs on the production address policy (https callbacks, public addresses only) and
may reach loopback only (``tests/loopback_only``), so no URL below is ever contacted.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serverproc import Server, t2i, wait_done

SUBMIT = "/api/v1/generateTask/nano-banana-2"
WEBHOOK_TEST = "/api/v1/webhooks/test"
ROTATE = "/api/v1/webhooks/secret/rotate"
JSON = {"Content-Type": "application/json"}
LONE_SURROGATE = "\\ud800"  # as it appears in the JSON text: an escape no encoder accepts
PYTHON_WORDS = ("codec", "sys.", "set_int_max_str_digits", "Traceback", "Error:")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("strict"), env={
        "PYTHONPATH": str(Path(__file__).parents[1] / "loopback_only"),
        "IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false",
        "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "false",
    }).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(strict: Server) -> Iterator[httpx.Client]:
    with strict.client(strict.new_key("10")) as c:
        yield c


def with_surrogate(body: dict[str, Any]) -> bytes:
    """``body`` as JSON text, each ``SURROGATE`` in it written as a lone surrogate escape."""
    return json.dumps(body).replace("SURROGATE", LONE_SURROGATE).encode()


def refused(r: httpx.Response, field: str | None, status: int = 400) -> str:
    """The error text of a refusal with ``status`` naming ``field``; it speaks no Python."""
    assert r.status_code == status, r.text
    data = r.json()["data"]
    assert data.get("field") == field, data
    for word in PYTHON_WORDS:
        assert word not in data["error"], data
    return str(data["error"])


# Bodies that are not JSON the service can read ----------------------------------------------


@pytest.mark.parametrize("path", [SUBMIT, WEBHOOK_TEST, ROTATE])
def test_body_nested_a_thousand_deep_is_400(client: httpx.Client, path: str) -> None:
    body = b'{"input": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert "nested too deeply" in refused(client.post(path, content=body, headers=JSON), None)


@pytest.mark.parametrize("path", [SUBMIT, WEBHOOK_TEST, ROTATE])
def test_body_that_is_not_utf8_is_400_in_plain_words(client: httpx.Client, path: str) -> None:
    r = client.post(path, content=b'{"input": "\xff"}', headers=JSON)
    assert refused(r, None) == "request body is not valid UTF-8 JSON"


def test_malformed_json_is_400_saying_where(client: httpx.Client) -> None:
    r = client.post(SUBMIT, content=b'{"input": }', headers=JSON)
    assert refused(r, None) == ("request body is not valid JSON: Expecting value at line 1, "
                                "column 11")


@pytest.mark.parametrize("field", ["seed", "num_images"])
def test_integer_too_long_to_convert_is_refused_by_field(client: httpx.Client,
                                                         field: str) -> None:
    body = json.dumps(t2i()).replace('"mode"', f'"{field}": {"9" * 5000}, "mode"')
    r = client.post(SUBMIT, content=body.encode(), headers=JSON)
    assert "integer" in refused(r, f"input.{field}")


# Strings that are not Unicode --------------------------------------------------------------


def _callback(url: str) -> dict[str, Any]:
    return {**t2i(), "request_type": "callback", "callback_url": url}


def _i2i(url: str) -> dict[str, Any]:
    return {"input": {"mode": "image-to-image", "prompt": "snow", "image_urls": [url],
                      "aspect_ratio": "1:1", "resolution": "1k"}}


@pytest.mark.parametrize("body,field", [
    ({**t2i(), "source": "app SURROGATE"}, "source"),
    (_callback("https://example.com/SURROGATE"), "callback_url"),
    (_i2i("https://example.com/SURROGATE.png"), "input.image_urls[0]"),
    (t2i("a fox SURROGATE"), "input.prompt"),
])
def test_lone_surrogate_is_refused_at_submit_naming_the_field(client: httpx.Client,
                                                             body: dict[str, Any],
                                                             field: str) -> None:
    r = client.post(SUBMIT, content=with_surrogate(body), headers=JSON)
    assert "Unicode" in refused(r, field)


@pytest.mark.parametrize("body,field", [
    (_callback("https://example.com/a\tb"), "callback_url"),
    (_i2i("https://example.com/a\nb.png"), "input.image_urls[0]"),
])
def test_url_with_control_characters_is_refused_at_submit(client: httpx.Client,
                                                         body: dict[str, Any],
                                                         field: str) -> None:
    assert "control characters" in refused(client.post(SUBMIT, json=body), field)


def test_seed_null_is_refused_naming_it(client: httpx.Client) -> None:
    r = client.post(SUBMIT, json=t2i(seed=None))
    assert refused(r, "input.seed").startswith("input.seed must be an integer")


# Webhook endpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "http://example.com/hook",
                                 "https://10.0.0.1/hook", "https://example.com/SURROGATE", 7])
def test_webhook_test_names_its_own_field_url(client: httpx.Client, url: Any) -> None:
    r = client.post(WEBHOOK_TEST, content=with_surrogate({"url": url}), headers=JSON)
    error = refused(r, "url")
    assert "callback_url" not in error and error.startswith("url")


@pytest.mark.parametrize("path", [WEBHOOK_TEST, ROTATE])
@pytest.mark.parametrize("body", [b"[1]", b"null", b'"url"', b"3"])
def test_webhook_body_that_is_not_an_object_is_400(client: httpx.Client, path: str,
                                                   body: bytes) -> None:
    r = client.post(path, content=body, headers=JSON)
    assert refused(r, None) == "the request body must be a JSON object"


@pytest.mark.parametrize("value", ["null", "true", '"60"', "-1", "1" * 5000])
def test_rotate_refuses_an_overlap_that_is_not_a_number_in_range(client: httpx.Client,
                                                                 value: str) -> None:
    body = ('{"overlapSeconds": ' + value + "}").encode()
    refused(client.post(ROTATE, content=body, headers=JSON), "overlapSeconds")


@pytest.mark.parametrize("body", [b"", b"{}", b'{"overlapSeconds": 60}'])
def test_rotate_takes_no_body_an_empty_object_or_an_overlap(client: httpx.Client,
                                                            body: bytes) -> None:
    r = client.post(ROTATE, content=body, headers=JSON)
    assert r.status_code == 200, r.text


# Result files ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["\u00e9", "\u4f60\u597d", "\U0001f98a"])
def test_result_url_with_a_non_ascii_token_is_404(client: httpx.Client, token: str) -> None:
    data = wait_done(client, client.post(SUBMIT, json=t2i()).json()["data"]["taskId"])
    parts = json.loads(data["resultJson"])["resultUrls"][0].split("/")
    parts[-2] = token * len(parts[-2])
    refused(httpx.get("/".join(parts)), None, status=404)


# Headers -----------------------------------------------------------------------------------


def raw_answer(server: Server, request: bytes) -> bytes:
    """The server's answer to ``request`` sent as is on a socket of its own (a client may
    write headers that httpx would correct)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := s.recv(65536)):
            answer += chunk
    return answer


@pytest.mark.parametrize("length", ["0" * 5000 + "2", "0" * 4990 + "9" * 19])
def test_a_content_length_of_thousands_of_digits_is_not_a_500(strict: Server,
                                                              length: str) -> None:
    key = strict.new_key("10")
    answer = raw_answer(strict, (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: imagegate.test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close"
        "\r\n\r\n{}").encode())
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer

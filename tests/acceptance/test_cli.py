"""The command line: keys and accounts, first start, and clear errors on bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from serverproc import Server, cli, t2i, wait_done


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    out = cli(tmp_path, "keys", "create", "--credit", "2.50", "--name", "ci").stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("ig_") and " " not in last
    listing = cli(tmp_path, "keys", "list").stdout
    assert last.split("_")[1] in listing and "$2.50" in listing and "ci" in listing
    assert last not in listing  # the plain key is shown only once


def test_keys_create_json(tmp_path: Path) -> None:
    made = json.loads(cli(tmp_path, "keys", "create", "--credit", "1", "--json").stdout)
    assert made["key"].startswith("ig_") and made["balanceUsd"] == 1.0
    listing = cli(tmp_path, "keys", "list", "--json").stdout
    rows = [json.loads(line) for line in listing.splitlines()]
    assert [r["keyId"] for r in rows] == [made["keyId"]]


def test_accounts_credit_by_key_id_and_by_account(tmp_path: Path) -> None:
    made = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    assert "$5.00" in cli(tmp_path, "accounts", "credit", made["keyId"], "5").stdout
    assert "$5.25" in cli(tmp_path, "accounts", "credit", made["accountId"], "0.25").stdout


def test_revoke_and_revoke_again(tmp_path: Path) -> None:
    made = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    assert "revoked" in cli(tmp_path, "keys", "revoke", made["keyId"]).stdout
    assert "already" in cli(tmp_path, "keys", "revoke", made["keyId"]).stdout
    assert "revoked" in cli(tmp_path, "keys", "list").stdout


def test_bad_arguments_fail_with_a_clear_message(tmp_path: Path) -> None:
    cases = [
        (["keys", "create", "--credit", "ten"], 2, "not a USD amount"),
        (["accounts", "credit", "nobody", "5"], 1, "no account or key"),
        (["keys", "revoke", "nope"], 1, "no key with id"),
        (["serve", "--port", "99999"], 2, "not a port number"),
        (["keys", "create", "--config", str(tmp_path / "missing.toml")], 2, "does not exist"),
    ]
    for args, code, message in cases:
        proc = cli(tmp_path, *args, check=False)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)


def test_bad_environment_setting_is_named(tmp_path: Path) -> None:
    proc = cli(tmp_path, "keys", "list", env={"IMAGEGATE_WORKER_CONCURRENCY": "many"},
               check=False)
    assert proc.returncode == 2
    assert "IMAGEGATE_WORKER_CONCURRENCY" in proc.stderr


def test_first_start_creates_a_demo_key_and_prints_a_working_curl(tmp_path: Path) -> None:
    srv = Server(tmp_path / "fresh").start()
    try:
        out = srv.first_output
        key = next(w for w in out.split() if w.startswith("ig_"))
        assert "curl" in out and "generateTask/nano-banana-2" in out
        r = httpx.get(srv.base_url + "/api/v1/apikeys/current-balance",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.json()["data"] == 10.0
    finally:
        srv.stop()
    again = Server(tmp_path / "fresh").start()
    again.stop()
    assert "demo API key" not in again.first_output


def test_tasks_show_lists_every_route_attempt(tmp_path: Path) -> None:
    srv = Server(tmp_path / "d", env={"IMAGEGATE_WORKER_RETRY_BACKOFF_SECONDS": "0"}).start()
    try:
        key = srv.new_key("1")
        with srv.client(key) as c:
            r = c.post("/api/v1/generateTask/nano-banana-2",
                       json=t2i("[sandbox:fail=Timeout:1] retried once"))
            task_id = r.json()["data"]["taskId"]
            assert wait_done(c, task_id)["state"] == "success"
    finally:
        srv.stop()
    view = json.loads(cli(tmp_path / "d", "tasks", "show", task_id, "--json").stdout)
    assert [(a["attempt"], a["route"], a["outcome"]) for a in view["routeAttempts"]] == [
        (1, "sandbox", "Timeout"), (2, "sandbox", "success")]
    assert view["charge"] == "settled" and view["price"] == "$0.05"
    text = cli(tmp_path / "d", "tasks", "show", task_id).stdout
    assert "attempt 1: sandbox -> Timeout" in text
    missing = cli(tmp_path / "d", "tasks", "show", "nope", check=False)
    assert missing.returncode == 1 and "no task" in missing.stderr

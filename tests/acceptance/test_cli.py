"""The command line: keys and accounts, first start, and clear errors on bad arguments."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serverproc import Server, cli, free_port, t2i, wait_done

from imagegate import accounts
from imagegate.clock import FakeClock
from imagegate.contract import SubmitInput
from imagegate.money import ChargeState
from imagegate.store.base import Finish
from imagegate.store.sqlite import SqliteStore
from imagegate.tasks import Task, TaskState, new_task_id

NOW = 1_700_000_000_000


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory with its database, as `imagegate migrate` makes it."""
    assert "database ready" in cli(tmp_path, "migrate").stdout
    return tmp_path


def test_keys_create_prints_the_key_alone_on_the_last_line(data: Path) -> None:
    tmp_path = data
    out = cli(tmp_path, "keys", "create", "--credit", "2.50", "--name", "ci").stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("ig_") and " " not in last
    listing = cli(tmp_path, "keys", "list").stdout
    assert last.split("_")[1] in listing and "$2.50" in listing and "ci" in listing
    assert last not in listing  # the plain key is shown only once


def test_keys_create_json(data: Path) -> None:
    tmp_path = data
    made = json.loads(cli(tmp_path, "keys", "create", "--credit", "1", "--json").stdout)
    assert made["key"].startswith("ig_") and made["balanceUsd"] == 1.0
    listing = cli(tmp_path, "keys", "list", "--json").stdout
    rows = [json.loads(line) for line in listing.splitlines()]
    assert [r["keyId"] for r in rows] == [made["keyId"]]
    assert rows[0]["balanceUsd"] == made["balanceUsd"]  # the same units as keys create --json


def test_keys_list_has_a_header_row(data: Path) -> None:
    cli(data, "keys", "create", "--credit", "3", "--name", "app")
    header, row = cli(data, "keys", "list").stdout.splitlines()
    assert header.split() == ["KEY", "ID", "PREFIX", "ACCOUNT", "BALANCE", "STATE", "NAME"]
    assert "$3.00" in row and "active" in row and row.endswith("app")


def test_accounts_credit_by_key_id_and_by_account(data: Path) -> None:
    tmp_path = data
    made = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    assert "$5.00" in cli(tmp_path, "accounts", "credit", made["keyId"], "5").stdout
    assert "$5.25" in cli(tmp_path, "accounts", "credit", made["accountId"], "0.25").stdout


def test_revoke_and_revoke_again(data: Path) -> None:
    tmp_path = data
    made = json.loads(cli(tmp_path, "keys", "create", "--json").stdout)
    assert "revoked" in cli(tmp_path, "keys", "revoke", made["keyId"]).stdout
    assert "already" in cli(tmp_path, "keys", "revoke", made["keyId"]).stdout
    assert "revoked" in cli(tmp_path, "keys", "list").stdout


def test_bad_arguments_fail_with_a_clear_message(data: Path) -> None:
    tmp_path = data
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


@pytest.mark.parametrize("command", ["api", "worker"])
def test_results_in_s3_without_credentials_stop_the_start_saying_what_to_set(
        data: Path, command: str) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update({"IMAGEGATE_S3_BUCKET": "results", "IMAGEGATE_PORT": str(free_port()),
                "HOME": str(data), "AWS_EC2_METADATA_DISABLED": "true"})  # no ~/.aws, no EC2
    proc = subprocess.run([sys.executable, "-m", "imagegate.cli", command, "--data-dir",
                           str(data)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert "configuration error: results in S3 (s3_bucket) need credentials: set " \
           "s3_access_key_id and s3_secret_access_key, or AWS_ACCESS_KEY_ID" in proc.stderr


def test_first_start_creates_a_demo_key_and_prints_a_working_curl(tmp_path: Path) -> None:
    srv = Server(tmp_path / "fresh").start()
    try:
        out = srv.first_output
        key = next(w for w in out.split() if w.startswith("ig_"))
        r = httpx.get(srv.base_url + "/api/v1/apikeys/current-balance",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.json()["data"] == 10.0
        # The printed command, sent as curl would send it, answers with the finished task.
        words = shlex.split(out.split("curl ", 1)[1].split("\n\n", 1)[0].replace("\\\n", " "))
        given = list(itertools.pairwise(words))
        method, body = (next(v for flag, v in given if flag == name) for name in ("-X", "-d"))
        headers = dict(v.split(": ", 1) for flag, v in given if flag == "-H")
        url = next(w for w in words if w.startswith("http"))
        assert (method, headers["Authorization"]) == ("POST", f"Bearer {key}")
        task = httpx.post(url, content=body, headers=headers, timeout=60).json()["data"]
        assert task["state"] == "success", task
        [image] = json.loads(task["resultJson"])["resultUrls"]
        assert httpx.get(image).content.startswith(b"\x89PNG")
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
    assert view["state"] == "success"  # the API's word, not the store's
    [url] = view["resultUrls"]
    assert url.startswith("http://127.0.0.1:") and f"/files/{task_id}/" in url
    text = cli(tmp_path / "d", "tasks", "show", task_id).stdout
    assert "attempt 1: sandbox -> Timeout" in text
    assert "state: success" in text and f"result: {url}" in text
    missing = cli(tmp_path / "d", "tasks", "show", "nope", check=False)
    assert missing.returncode == 1 and "no task" in missing.stderr


def test_tasks_show_says_when_a_tasks_record_was_pruned(data: Path) -> None:
    async def finished_and_pruned() -> str:
        store = SqliteStore(data / "imagegate.db")
        try:
            new = await accounts.create_key(store, FakeClock(), credit_micros=1_000_000)
            task = Task(id=new_task_id(), account_id=new.account.id, key_id=new.key.id,
                        model="nano-banana-2",
                        input=SubmitInput("text-to-image", "a fox", "1:1", "1k", "png"),
                        state=TaskState.QUEUED, created_ms=NOW, price_micros=50_000,
                        charge_state=ChargeState.HELD, result_token="t")
            await store.insert_task(task, 10)
            await store.claim_tasks("w", NOW, 30_000, 1)
            finish = Finish(TaskState.FAILED, NOW + 1, fail_code="Timeout", fail_msg="slow")
            assert await store.finish_task(task.id, 1, finish, None)
            await store.mark_results_deleted(task.id)
            assert await store.prune_records(NOW + 2, 10) == 1
            return task.id
        finally:
            await store.close()

    task_id = asyncio.run(finished_and_pruned())
    pruned = cli(data, "tasks", "show", task_id, check=False)
    assert pruned.returncode == 1, pruned.stderr
    assert f"task '{task_id}' was pruned" in pruned.stderr
    assert "record_retention_days" in pruned.stderr
    assert "hold -$0.05, refund $0.05" in pruned.stderr
    never = cli(data, "tasks", "show", "0" * 32, check=False)
    assert never.returncode == 1 and "no task with id" in never.stderr


def test_commands_on_a_directory_without_a_database_say_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["keys", "list"], ["keys", "create"], ["accounts", "credit", "k", "1"],
                 ["tasks", "show", "t"]):
        proc = cli(missing, *args, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "no imagegate database" in proc.stderr and "imagegate migrate" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not missing.exists()  # nothing was created
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(empty, "keys", "list", check=False).returncode == 1
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("args", [["keys", "create", "--credit", "1e30"],
                                  ["accounts", "credit", "k", "1e30"],
                                  ["accounts", "credit", "k", "-1000000001"]])
def test_amounts_beyond_the_ledger_are_refused_in_one_sentence(data: Path,
                                                               args: list[str]) -> None:
    proc = cli(data, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "more than one command may move" in proc.stderr and "Traceback" not in proc.stderr


def test_a_refused_keys_create_leaves_no_key_behind(data: Path) -> None:
    negative = cli(data, "keys", "create", "--credit", "-5", check=False)
    assert negative.returncode == 2 and "cannot be negative" in negative.stderr
    unknown = cli(data, "keys", "create", "--account", "acct_nope", check=False)
    assert unknown.returncode == 1 and "no account" in unknown.stderr
    assert cli(data, "keys", "list", "--json").stdout == ""


def test_a_command_without_its_action_prints_that_commands_help(data: Path) -> None:
    proc = cli(data, "keys", check=False)
    assert proc.returncode == 2
    assert "create" in proc.stderr and "revoke" in proc.stderr and "serve" not in proc.stderr


def test_global_options_go_before_the_command_too(data: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imagegate.cli", "--data-dir", str(data),
                           "keys", "create", "--credit", "1", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["balanceUsd"] == 1.0
    assert len(cli(data, "keys", "list", "--json").stdout.splitlines()) == 1


def test_one_server_per_port_and_per_data_dir(tmp_path: Path) -> None:
    first = Server(tmp_path / "a").start()
    try:
        same_port = subprocess.run(
            [sys.executable, "-m", "imagegate.cli", "serve", "--data-dir", str(tmp_path / "b"),
             "--port", str(first.port)], capture_output=True, text=True, timeout=60)
        same_dir = subprocess.run(
            [sys.executable, "-m", "imagegate.cli", "serve", "--data-dir", str(tmp_path / "a"),
             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
        assert httpx.get(first.base_url + "/readyz").status_code == 200
    finally:
        first.stop()
    assert same_port.returncode == 1
    assert f"port {first.port} on 127.0.0.1 is already in use" in same_port.stderr
    assert same_dir.returncode == 1 and str(tmp_path / "a") in same_dir.stderr
    assert "already serving data dir" in same_dir.stderr
    again = Server(tmp_path / "a").start()  # the lock went with the first server
    again.stop()


def test_several_processes_on_one_data_dir_only_when_asked(tmp_path: Path) -> None:
    shared = {"IMAGEGATE_LOCK_DATA_DIR": "false"}
    first = Server(tmp_path / "a", env=shared).start()
    try:
        second = Server(tmp_path / "a", env=shared).start()
        second.stop()
    finally:
        first.stop()


def test_start_names_the_safety_switches_that_are_off(tmp_path: Path) -> None:
    srv = Server(tmp_path / "d").start()  # the test servers allow private networks and http
    srv.stop()
    assert "note: allow_private_networks is on" in srv.first_output
    assert "note: allow_http_callbacks is on" in srv.first_output
    quiet = Server(tmp_path / "e", env={"IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false",
                                        "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "false"}).start()
    quiet.stop()
    assert "allow_" not in quiet.first_output

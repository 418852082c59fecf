"""Schema-driven fuzzing of every operation in the served /openapi.json, against a real server
process with a valid API key: no answer is a 5xx and every answer matches the document (status
code, content type, headers and body).

Schemathesis runs as its command-line tool, in a child process, over the document the server
serves (its pytest loader for a schema that a fixture serves fails on pytest 9). Its examples,
coverage and fuzzing phases run with a fixed seed, valid and invalid data, and a bounded number
of examples per operation: about 15 s on 2 cores. The server and the fuzzer may reach loopback
only (``tests/loopback_only``), so the URLs the fuzzer makes up are never contacted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import Server

_EXAMPLES = 100
_SEED = 20261201
_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
           "response_headers_conformance", "response_schema_conformance")
_FENCE = {"PYTHONPATH": str(Path(__file__).parents[1] / "loopback_only")}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on the production address policy, with no rate or task limit to stop the
    fuzzer before validation."""
    srv = Server(tmp_path_factory.mktemp("fuzz"), env={
        **_FENCE,
        "IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "false",
        "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "false",
        "IMAGEGATE_LIMITS_SUBMIT_RATE": "100000",
        "IMAGEGATE_LIMITS_SUBMIT_BURST": "100000",
        "IMAGEGATE_LIMITS_MAX_CONCURRENT_TASKS": "100000",
        # The fuzzer's tasks are drawn one at a time, leaving the cores to the requests, and the
        # stop waits at most a short lease for the one running.
        "IMAGEGATE_WORKER_CONCURRENCY": "1",
        "IMAGEGATE_WORKER_LEASE_SECONDS": "3",
    }).start()
    yield srv
    srv.stop()


def fuzz(server: Server, key: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", server.base_url + "/openapi.json",
           "--header", f"Authorization: Bearer {key}",
           "--checks", ",".join(_CHECKS), "--phases", "examples,coverage,fuzzing",
           "--mode", "all", "--max-examples", str(_EXAMPLES), "--seed", str(_SEED),
           "--workers", "1", "--request-timeout", "10", "--generation-database", "none",
           "--no-color",
           "--report", "json", "--report-json-path", str(workdir / "report.json")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=workdir,
                          env={**os.environ, **_FENCE})


def test_no_operation_answers_5xx_or_off_its_schema(fuzz_server: Server,
                                                   tmp_path: Path) -> None:
    run = fuzz(fuzz_server, fuzz_server.new_key("100000"), tmp_path)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())
    served = httpx.get(fuzz_server.base_url + "/openapi.json").json()["paths"]
    # Every operation but the one serving the document the fuzzer reads.
    operations = sum(len(item) for item in served.values()) - 1
    assert report["complete"] and not report["errors"], report
    assert report["operations"]["tested"] == report["operations"]["total"] == operations, report

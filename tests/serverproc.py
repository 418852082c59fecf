"""A real ``imagegate serve`` process for acceptance tests, driven through HTTP and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``imagegate ARGS --data-dir DATA_DIR`` and return the finished process."""
    cmd = [sys.executable, "-m", "imagegate.cli", *args, "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Server:
    """``imagegate serve`` on a free loopback port, in its own process group."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 config: Path | None = None, command: str = "serve") -> None:
        self.command = command  # serve, or api (the API alone)
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "true",
            "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "true",
            "IMAGEGATE_SANDBOX_DELAY_SECONDS": "0",
            "IMAGEGATE_SWEEPER_INTERVAL_SECONDS": "0.5",
            "IMAGEGATE_WORKER_POLL_SECONDS": "0.5",
            "IMAGEGATE_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        self.first_output = ""

    def start(self, timeout: float = 30.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "imagegate.cli", self.command, "--data-dir",
               str(self.data_dir), "--port", str(self.port)]
        if self.config:
            cmd += ["--config", str(self.config)]
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, **self.env},
                                         start_new_session=True)
        self._wait_ready(timeout)
        self.first_output = self.log_path.read_text()
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        """Kill the whole server (every process of it) with SIGKILL, as a crash would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self.proc = None

    def new_key(self, credit: str = "10", **extra: str) -> str:
        args = ["keys", "create", "--credit", credit]
        for name, value in extra.items():
            args += [f"--{name}", value]
        if self.config:
            args += ["--config", str(self.config)]
        return cli(self.data_dir, *args).stdout.strip().splitlines()[-1]

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


class Loops:
    """``imagegate worker`` or ``imagegate sweeper`` (``command``, with ``args``) in its own
    process group, started once it says it is running."""

    def __init__(self, data_dir: Path, command: str, *args: str,
                 env: dict[str, str] | None = None, config: Path | None = None) -> None:
        self.data_dir = data_dir
        self.cmd = [sys.executable, "-m", "imagegate.cli", command, "--data-dir", str(data_dir),
                    *args, *(["--config", str(config)] if config else [])]
        self.env = {"IMAGEGATE_ALLOW_PRIVATE_NETWORKS": "true",
                    "IMAGEGATE_ALLOW_HTTP_CALLBACKS": "true",
                    "IMAGEGATE_SANDBOX_DELAY_SECONDS": "0",
                    "IMAGEGATE_SWEEPER_INTERVAL_SECONDS": "0.3",
                    "IMAGEGATE_WORKER_POLL_SECONDS": "0.2",
                    "IMAGEGATE_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = data_dir / f"{command}-{free_port()}.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> Loops:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         text=True, env={**os.environ, **self.env},
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while " running (" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.cmd} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait: the exit status."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


def t2i(prompt: str = "a red fox", **input_fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"mode": "text-to-image", "prompt": prompt, "aspect_ratio": "1:1",
                            "resolution": "1k"}
    body.update(input_fields)
    return {"request_type": "async", "input": body}


def wait_done(client: httpx.Client, task_id: str, model: str = "nano-banana-2",
              timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/statusTask/{model}", params={"taskId": task_id})
        r.raise_for_status()
        data: dict[str, Any] = r.json()["data"]
        if data["state"] != "processing":
            return data
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still processing after {timeout}s")

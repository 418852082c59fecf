"""Process plumbing shared by the benchmarks that drive a real ``imagegate serve``
(``bench_api.py``, ``bench_webhooks.py``): free loopback ports, server subprocesses in their own
process group polled until ready, the imagegate environment with limits lifted, a key with
practically unlimited credit, and the CPU the processes of a group have used.

Not a benchmark: the scripts import it as ``harness`` (their own directory is on ``sys.path``
when they are run as ``python bench/<script>.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

UNLIMITED = "1000000000"
IMAGEGATE_CLI = (sys.executable, "-m", "imagegate.cli")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server subprocess in its own process group, answering on ``base_url``."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, grace_s: float = 40.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``grace_s``."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace_s)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            print(f"  {self.base_url} did not stop in {grace_s:.0f}s; killing it", flush=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pids(self) -> list[int]:
        """Every live process of the group."""
        return sorted({pid for pid, _ in self._stats()})

    def thread_cpu_s(self) -> dict[int, float]:
        """CPU seconds (user + system) used so far by each live thread of the group."""
        return {tid: cpu for (_, tid), cpu in self._stats(threads=True).items()}

    def _stats(self, threads: bool = False) -> dict[tuple[int, int], float]:
        found = {}
        tick = os.sysconf("SC_CLK_TCK")
        for proc_stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(proc_stat.parent.name)
            try:
                if int(proc_stat.read_text().rsplit(")", 1)[1].split()[2]) != self.proc.pid:
                    continue  # not in the group
                tasks = list((proc_stat.parent / "task").glob("*/stat")) if threads else []
                for stat in tasks or [proc_stat]:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    found[(pid, int(stat.parent.name))] = (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                continue  # gone meanwhile
        return found


def start_server(cmd: Sequence[str], env: dict[str, str], port: int, ready_path: str,
                 log_path: Path, timeout_s: float = 60.0, *, name: str = "server",
                 poll_s: float = 0.1) -> Server:
    """Start ``cmd`` (``env`` over this process's environment) in a new session, its output
    appended to ``log_path``, and poll ``ready_path`` every ``poll_s`` until it answers 200.
    ``name`` is what the messages call it when it exits early or is not ready in time."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(server.base_url + ready_path, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    server.stop()
    raise SystemExit(f"{name} not ready in {timeout_s:.0f}s:\n{log_path.read_text()}")


def imagegate_env(log_level: str, **extra: str) -> dict[str, str]:
    """Zero sandbox delay and limits far above anything a bench can reach (no 402/429), plus
    ``extra`` settings as ``IMAGEGATE_<NAME>`` variables."""
    env = {"IMAGEGATE_SANDBOX_DELAY_SECONDS": "0",
           "IMAGEGATE_LIMITS_SUBMIT_RATE": UNLIMITED,
           "IMAGEGATE_LIMITS_SUBMIT_BURST": UNLIMITED,
           "IMAGEGATE_LIMITS_MAX_CONCURRENT_TASKS": UNLIMITED,
           "IMAGEGATE_LOG_LEVEL": log_level}
    env.update({"IMAGEGATE_" + k.upper(): v for k, v in extra.items()})
    return env


def create_key(data_dir: Path, env: dict[str, str]) -> str:
    """A key with (practically) endless credit in ``data_dir``, created by ``imagegate keys``."""
    created = subprocess.run([*IMAGEGATE_CLI, "keys", "create", "--credit", UNLIMITED, "--name",
                              "bench", "--data-dir", str(data_dir)], capture_output=True,
                             text=True, check=True, env={**os.environ, **env})
    return created.stdout.strip().splitlines()[-1]


def start_imagegate(data_dir: Path, env: dict[str, str], *, name: str = "server",
                    poll_s: float = 0.1) -> Server:
    """``imagegate serve`` on ``data_dir`` and a free port, logging to ``server.log`` there."""
    port = free_port()
    return start_server([*IMAGEGATE_CLI, "serve", "--data-dir", str(data_dir), "--port",
                         str(port)], env, port, "/readyz", data_dir / "server.log", name=name,
                        poll_s=poll_s)


def client_for(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})

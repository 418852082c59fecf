"""moto's S3 server on loopback, in its own process, for the tests that keep results in S3: the
blob contract, the API's proxy and redirect answers, and a fleet.

Virtual-hosted addressing puts the bucket in the host name (``BUCKET.localhost:PORT``), which
this machine's resolver does not map to loopback; ``ToLoopback`` is an httpx transport that
connects to 127.0.0.1 whatever the host, with the Host header (and so the signature and moto's
bucket lookup) unchanged. Path-style requests need nothing of the kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from serverproc import free_port

from imagegate.blobs.s3 import Addressing, S3BlobStore
from imagegate.blobs.sigv4 import Credentials

# moto accepts any key unless asked to check them (see ``moto_s3(check_signatures=...)``).
TEST_CREDENTIALS = Credentials("AKIDTESTEXAMPLE", "imagegate/test+secret")


class ToLoopback(httpx.AsyncBaseTransport):
    """Sends every request to 127.0.0.1 at its URL's port, its Host header as it was."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class MotoS3:
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        """For path-style addressing."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def named_endpoint(self) -> str:
        """For virtual-hosted addressing: buckets become ``BUCKET.localhost``."""
        return f"http://localhost:{self.port}"

    def new_bucket(self) -> str:
        """A new, empty bucket (moto creates it on an unsigned request)."""
        bucket = f"imagegate-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.endpoint}/{bucket}", timeout=10).raise_for_status()
        return bucket

    def store(self, bucket: str, style: Addressing = "path", prefix: str = "",
              credentials: Credentials = TEST_CREDENTIALS, **options: int) -> S3BlobStore:
        endpoint = self.endpoint if style == "path" else self.named_endpoint
        return S3BlobStore(bucket, credentials, prefix=prefix, endpoint_url=endpoint,
                           addressing_style=style,
                           transport=ToLoopback() if style == "virtual" else None, **options)

    def keys(self, bucket: str) -> list[str]:
        """Every key in ``bucket``, read through moto's own listing (not the store's)."""
        r = httpx.get(f"{self.endpoint}/{bucket}", params={"list-type": "2"}, timeout=10)
        r.raise_for_status()
        return sorted(part.split("</Key>", 1)[0] for part in r.text.split("<Key>")[1:])


@contextmanager
def moto_s3(log_dir: Path, *, check_signatures_after: int | None = None) -> Iterator[MotoS3]:
    """moto's server on a free loopback port until the block ends. ``check_signatures_after``:
    after that many requests, moto checks every request's signature against the IAM keys it
    issued and refuses the others."""
    port = free_port()
    log_path = log_dir / f"moto-{port}.log"
    env = {**os.environ, "MOTO_PORT": str(port)}
    if check_signatures_after is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(check_signatures_after)
    with log_path.open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        _wait_ready(port, proc, log_path)
        yield MotoS3(port, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path,
                timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"moto's server exited early:\n{log_path.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"moto's server not ready in {timeout}s:\n{log_path.read_text()}")

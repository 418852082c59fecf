from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from s3server import MotoS3, moto_s3
from serverproc import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server per test module, on embedded defaults, sandbox with no delay."""
    srv = Server(tmp_path_factory.mktemp("data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("100")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3 server on loopback, one per test process; each test makes its own bucket."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server

"""Scratch PostgreSQL databases for tests: each test that needs one creates its own and drops it
afterwards, so tests never see each other's rows and may run in parallel.

The server is ``IMAGEGATE_TEST_POSTGRES_URL`` (default: the local one with trust auth, as on
the development machines and CI). Where it does not answer, the tests that need it are skipped,
except under CI, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ADMIN_URL = os.environ.get("IMAGEGATE_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(name: str, admin_url: str = ADMIN_URL) -> str:
    """The admin URL with its database replaced by ``name``."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {ADMIN_URL} ({exc})")


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new empty database, dropped (with any connection left to it) on exit."""
    name = f"imagegate_test_{uuid.uuid4().hex[:16]}"
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield url_of(name)
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

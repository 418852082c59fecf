"""What the S3 blob store does beyond the blob contract, on moto's server over real HTTP: where
keys land in the bucket, paging and batching in ``delete_prefix``, errors that name what went
wrong, and requests whose signatures moto checks against keys it issued."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import pytest
from s3server import TEST_CREDENTIALS, MotoS3, ToLoopback, moto_s3
from serverproc import free_port

from imagegate.blobs.base import result_key, task_prefix
from imagegate.blobs.s3 import S3BlobStore
from imagegate.blobs.sigv4 import Credentials
from imagegate.bootstrap import open_blobs
from imagegate.config import Settings
from imagegate.errors import StorageUnavailable

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_keys_land_under_the_prefix_in_the_bucket(moto: MotoS3) -> None:
    bucket = moto.new_bucket()

    async def scenario() -> None:
        for style in ("path", "virtual"):
            store = moto.store(bucket, style, prefix=f"{style}/results-here/")
            await store.put(result_key("t1", 1, 0, "png"), b"png", "image/png")
            await store.close()

    run(scenario())
    assert moto.keys(bucket) == ["path/results-here/results/t1/1/0.png",
                                 "virtual/results-here/results/t1/1/0.png"]


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_the_settings_build_the_s3_store_a_process_uses(moto: MotoS3, style: str) -> None:
    bucket = moto.new_bucket()
    settings = Settings.load(env={}, s3_bucket=bucket, s3_prefix="/".join(["deploy", style]),
                             s3_addressing_style=style, s3_endpoint_url=moto.endpoint
                             if style == "path" else moto.named_endpoint,
                             s3_access_key_id="AKIDSET", s3_secret_access_key="set-secret")
    store = open_blobs(settings, transport=ToLoopback() if style == "virtual" else None)

    async def scenario() -> None:
        try:
            await store.put(result_key("t1", 1, 0, "png"), b"png", "image/png")
        finally:
            await store.close()

    assert isinstance(store, S3BlobStore)
    run(scenario())
    assert moto.keys(bucket) == [f"deploy/{style}/results/t1/1/0.png"]


def test_delete_prefix_pages_through_the_listing_and_deletes_in_batches(moto: MotoS3) -> None:
    bucket = moto.new_bucket()
    store = moto.store(bucket, prefix="p/", page_size=2)

    async def scenario() -> int:
        for index in range(5):
            await store.put(result_key("t1", 1, index, "png"), b"x", "image/png")
        await store.put(result_key("t2", 1, 0, "png"), b"x", "image/png")
        try:
            return await store.delete_prefix(task_prefix("t1"))
        finally:
            await store.close()

    assert run(scenario()) == 5  # three listings of 2, 2 and 1 keys, each deleted at once
    assert moto.keys(bucket) == ["p/results/t2/1/0.png"]


class Recording(httpx.AsyncHTTPTransport):
    """The real transport, noting each request's method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return await super().handle_async_request(request)


def test_a_download_is_one_get_and_a_missing_blob_too(moto: MotoS3) -> None:
    bucket, recording = moto.new_bucket(), Recording()
    store = S3BlobStore(bucket, TEST_CREDENTIALS, endpoint_url=moto.endpoint,
                        addressing_style="path", transport=recording)
    key = result_key("t1", 1, 0, "png")

    async def scenario() -> None:
        try:
            await store.put(key, b"x" * 300_000, "image/png")
            recording.sent.clear()
            blob = await store.open(key, chunk_size=65_536)
            assert blob is not None and blob.size == 300_000
            assert len([chunk async for chunk in blob.chunks]) == 5
            assert await store.open(result_key("t2", 1, 0, "png")) is None
        finally:
            await store.close()

    run(scenario())
    assert recording.sent == [f"GET /{bucket}/results/t1/1/0.png",
                              f"GET /{bucket}/results/t2/1/0.png"]


def test_a_page_is_at_most_what_one_delete_request_takes() -> None:
    with pytest.raises(ValueError, match="page_size must be 1 to 1000"):
        S3BlobStore("b", Credentials("k", "s"), page_size=1001)


def test_a_missing_bucket_is_an_error_naming_it_not_a_missing_blob(moto: MotoS3) -> None:
    store = moto.store("no-such-bucket-here")

    async def scenario() -> None:
        try:
            with pytest.raises(StorageUnavailable, match=r"PutObject .*no-such-bucket-here.*"
                                                         r"404 \(NoSuchBucket\)"):
                await store.put(result_key("t1", 1, 0, "png"), b"x", "image/png")
            with pytest.raises(StorageUnavailable, match=r"GetObject .*NoSuchBucket"):
                await store.open(result_key("t1", 1, 0, "png"))
            with pytest.raises(StorageUnavailable, match=r"ListObjectsV2 .*NoSuchBucket"):
                await store.delete_prefix(task_prefix("t1"))
        finally:
            await store.close()

    run(scenario())


def test_an_endpoint_nobody_answers_on_is_unavailable_storage() -> None:
    store = S3BlobStore("bucket", Credentials("k", "s"),
                        endpoint_url=f"http://127.0.0.1:{free_port()}", addressing_style="path")

    async def scenario() -> None:
        try:
            with pytest.raises(StorageUnavailable, match="cannot be reached: ConnectError"):
                await store.put("results/t1/1/0.png", b"x", "image/png")
        finally:
            await store.close()

    run(scenario())


# Signatures checked by moto ---------------------------------------------------------------

# The requests moto lets through unchecked before it checks every signature: the three that
# make the IAM user, its key and its policy below.
SETUP_ACTIONS = 3


@pytest.fixture(scope="module")
def checking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoS3, Credentials]]:
    """A moto server that checks signatures, and the IAM keys it issued (allowed s3:*)."""
    with moto_s3(tmp_path_factory.mktemp("moto-iam"),
                 check_signatures_after=SETUP_ACTIONS) as server:
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="imagegate")
        made = iam.create_access_key(UserName="imagegate")["AccessKey"]
        iam.put_user_policy(UserName="imagegate", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", '
            '"Resource": "*"}]}'))
        yield server, Credentials(made["AccessKeyId"], made["SecretAccessKey"])


def test_moto_refuses_a_request_signed_with_the_wrong_secret(
        checking: tuple[MotoS3, Credentials]) -> None:
    server, credentials = checking
    wrong = Credentials(credentials.access_key_id, "not-the-secret")
    store = server.store("any-bucket", credentials=wrong)

    async def scenario() -> None:
        try:
            with pytest.raises(StorageUnavailable, match="403"):
                await store.put("results/t1/1/0.png", b"x", "image/png")
        finally:
            await store.close()

    run(scenario())


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_every_request_is_signed_as_s3_checks_it(checking: tuple[MotoS3, Credentials],
                                                 style: str, tmp_path: Path) -> None:
    server, credentials = checking
    bucket = f"signed-{style}"
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                      aws_access_key_id=credentials.access_key_id,
                      aws_secret_access_key=credentials.secret_access_key)
    s3.create_bucket(Bucket=bucket)
    # Keys and a prefix with characters that signing must encode exactly as they are sent.
    store = server.store(bucket, style, prefix="odd prefix/ü+=~/",  # type: ignore[arg-type]
                         credentials=credentials)
    key = "results/t 1/1/0+1=2 ü.png"

    async def scenario() -> None:
        try:
            await store.put(key, b"signed bytes", "image/png")
            blob = await store.open(key)
            assert blob is not None
            assert b"".join([c async for c in blob.chunks]) == b"signed bytes"
            assert await store.delete_prefix("results/t 1/") == 1
            assert await store.open(key) is None
        finally:
            await store.close()

    run(scenario())

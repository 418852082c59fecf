"""Result URLs over results kept in S3, through the HTTP app in-process: proxied (the API streams
the bytes) or redirected (307 to a presigned URL). The token and the expiry are checked by the
API either way, and a presigned URL never outlives its result. The one file of this tier with a
server: moto's S3 on loopback (tests/s3server.py); the clock is still the harness's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from harness import Harness
from s3server import TEST_CREDENTIALS, MotoS3, ToLoopback

from imagegate.blobs.s3 import Addressing

SUBMIT = "/api/v1/generateTask/nano-banana-2"
T2I = {"input": {"mode": "text-to-image", "prompt": "a fox", "aspect_ratio": "1:1",
                 "resolution": "1k"}}
PNG = b"\x89PNG\r\n\x1a\n"


def on_s3(moto: MotoS3, style: Addressing, delivery: str,
          ) -> Callable[[Callable[[Harness, str], Awaitable[None]]], None]:
    """Run the scenario on a harness whose results go to a new bucket of ``moto``."""
    bucket = moto.new_bucket()
    settings: dict[str, Any] = dict(
        s3_bucket=bucket, s3_endpoint_url=moto.endpoint if style == "path" else
        moto.named_endpoint, s3_addressing_style=style, s3_prefix="imagegate",
        s3_access_key_id=TEST_CREDENTIALS.access_key_id,
        s3_secret_access_key=TEST_CREDENTIALS.secret_access_key, results_delivery=delivery,
        retention_days=1.0)

    def run(body: Callable[[Harness, str], Awaitable[None]]) -> None:
        async def go() -> None:
            blobs = moto.store(bucket, style, prefix="imagegate/")
            h = await Harness.open(blobs=blobs, **settings)
            try:
                await body(h, bucket)
            finally:
                await h.close()

        asyncio.run(go())
    return run


async def finished_task(h: Harness) -> tuple[str, str]:
    """A task that succeeded: its id and the path of its result URL."""
    made = await h.new_key("1")
    async with h.http(made.plain) as c:
        task_id = (await c.post(SUBMIT, json=T2I)).json()["data"]["taskId"]
        await h.work()
        r = await c.get("/api/v1/statusTask/nano-banana-2", params={"taskId": task_id})
    [url] = json.loads(r.json()["data"]["resultJson"])["resultUrls"]
    return task_id, urlsplit(url).path


def test_proxied_results_stream_from_s3_until_they_expire_then_410(moto: MotoS3) -> None:
    @on_s3(moto, "path", "proxy")
    async def _(h: Harness, bucket: str) -> None:
        task_id, path = await finished_task(h)
        assert moto.keys(bucket) == [f"imagegate/results/{task_id}/1/0.png"]
        async with h.http() as anyone:
            got = await anyone.get(path)
            assert got.status_code == 200 and got.content[:8] == PNG
            assert got.headers["content-length"] == str(len(got.content))
            assert got.headers["content-type"] == "image/png"
            h.clock.advance(86_401)
            await h.sweep()
            gone = await anyone.get(path)
        assert gone.status_code == 410 and gone.json()["code"] == 410
        assert moto.keys(bucket) == []  # the sweeper deleted the task's keys


def test_redirected_results_send_the_client_to_a_presigned_url_of_the_bytes(
        moto: MotoS3) -> None:
    @on_s3(moto, "virtual", "redirect")
    async def _(h: Harness, bucket: str) -> None:
        task_id, path = await finished_task(h)
        async with h.http() as anyone:
            moved = await anyone.get(path)
            wrong_token = await anyone.get(path.replace(path.split("/")[3], "x" * 32))
        assert moved.status_code == 307 and moved.headers["cache-control"] == "no-store"
        location = urlsplit(moved.headers["location"])
        assert location.netloc == f"{bucket}.localhost:{moto.port}"
        assert location.path == f"/imagegate/results/{task_id}/1/0.png"
        assert parse_qs(location.query)["X-Amz-Expires"] == ["300"]
        assert wrong_token.status_code == 404 and "location" not in wrong_token.headers
        async with httpx.AsyncClient(transport=ToLoopback()) as browser:
            image = await browser.get(moved.headers["location"])  # no key, no cookie
        assert image.status_code == 200 and image.content[:8] == PNG


def test_a_presigned_url_never_outlives_its_result(moto: MotoS3) -> None:
    @on_s3(moto, "path", "redirect")
    async def _(h: Harness, bucket: str) -> None:
        task_id, path = await finished_task(h)
        expire_ms = (await h.task(task_id)).expire_ms
        assert expire_ms is not None

        async def answer_at(ms_before_expiry: int) -> httpx.Response:
            h.clock.now = expire_ms - ms_before_expiry
            async with h.http() as anyone:
                return await anyone.get(path)

        late = await answer_at(42_500)
        assert late.status_code == 307
        assert parse_qs(urlsplit(late.headers["location"]).query)["X-Amz-Expires"] == ["42"]
        last_second = await answer_at(500)  # no whole second left: served by the API itself
        assert last_second.status_code == 200 and last_second.content[:8] == PNG
        expired = await answer_at(0)
        assert expired.status_code == 410 and "location" not in expired.headers

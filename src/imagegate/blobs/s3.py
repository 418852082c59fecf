"""Result files in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph, moto...), over
httpx with our own SigV4 signing (``blobs/sigv4.py``).

Why not an SDK: the store needs five plain REST calls (PutObject, GetObject, ListObjectsV2,
DeleteObjects, a presigned GET), and httpx is already here. boto3 is synchronous: in a thread
pool every call, and every chunk read of a download a slow client drains, takes a pool thread,
and each open download pins one of urllib3's pooled connections; it also brings botocore (a
16 MB wheel, 20 MB installed, and a slow first import). aiobotocore is async but pins
botocore's exact version and brings aiohttp, a second HTTP stack beside httpx. Over httpx a
download is one streamed GET whose chunks are awaited on the event loop, uploads and listings
share its connection pool, and the base install gains nothing, so no ``[s3]`` extra is needed.
The cost is the signing code, checked against Amazon's worked examples and against moto's
server checking signatures, and a credential chain (``blobs/credentials.py``) that reads the
static links itself and leaves instance, container and SSO credentials to botocore, an
optional extra (``imagegate[aws]``).

Addressing: ``virtual`` puts the bucket in the host name (``https://BUCKET.s3.REGION.
amazonaws.com/KEY``, what AWS wants), ``path`` in the path (``https://HOST/BUCKET/KEY``, what
MinIO and most self-hosted servers want). Keys live under ``prefix`` in the bucket.

Errors: an answer that is not a success, or an endpoint that cannot be reached, raises
``StorageUnavailable`` naming the operation, the key and S3's error code; a GET that finds no
such key is None.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import httpx

from imagegate.blobs.base import CHUNK_SIZE, OpenBlob
from imagegate.blobs.credentials import CredentialSource, StaticCredentials
from imagegate.blobs.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    presign,
    quote_key,
    sign,
)
from imagegate.errors import StorageUnavailable

__all__ = ["S3BlobStore", "bucket_origin"]

Addressing = Literal["path", "virtual"]
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


class S3BlobStore:
    """``endpoint_url`` empty: AWS in ``region``. ``page_size``: keys listed, then deleted, per
    request pair in ``delete_prefix``. ``transport``: the HTTP transport (tests route a
    virtual-hosted name to loopback with it)."""

    def __init__(self, bucket: str, credentials: Credentials | CredentialSource, *,
                 prefix: str = "",
                 endpoint_url: str = "", region: str = "us-east-1",
                 addressing_style: Addressing = "virtual", page_size: int = DELETE_BATCH,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not 1 <= page_size <= DELETE_BATCH:
            raise ValueError(f"page_size must be 1 to {DELETE_BATCH}, not {page_size}")
        self.bucket = bucket
        self.page_size = page_size
        self.credentials = StaticCredentials(credentials) \
            if isinstance(credentials, Credentials) else credentials
        self.prefix = prefix
        self.region = region
        self.base = _bucket_base(bucket, endpoint_url, region, addressing_style)
        self.bucket_path = "" if addressing_style == "virtual" else "/" + quote_key(bucket)
        # Downloads hold a connection while a client reads them: room for many at once.
        self.client = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False,
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))

    # The protocol --------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        digest = (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()
        response = await self._send("PUT", self._object_path(key), {},
                                    {"content-type": content_type}, data, digest)
        await self._expect(response, 200, f"PutObject {key}")

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> OpenBlob | None:
        response = await self._send("GET", self._object_path(key), {}, {}, None, EMPTY_SHA256,
                                    stream=True)
        if response.status_code == 404 and _error_code(await response.aread()) == "NoSuchKey":
            return None
        await self._expect(response, 200, f"GetObject {key}")
        try:
            size = int(response.headers["content-length"])
        except (KeyError, ValueError) as exc:
            await response.aclose()
            raise StorageUnavailable(f"GetObject {key}: the answer has no Content-Length") \
                from exc
        return OpenBlob(size, self._chunks(response, key, chunk_size), response.aclose)

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        path = self._object_path(key)
        query = presign("GET", self._host, path, await self.credentials.current(), self.region,
                        datetime.now(UTC), expires_s)
        return f"{self._origin}{path}?{query}"

    async def delete_prefix(self, prefix: str) -> int:
        """List the keys under ``prefix`` a page at a time (up to 1000 keys) and delete each
        page with one DeleteObjects request."""
        deleted, token = 0, ""
        while True:
            keys, token = await self._list(self.prefix + _checked(prefix), token)
            if keys:
                await self._delete(keys)
                deleted += len(keys)
            if not token:
                return deleted

    async def close(self) -> None:
        await self.client.aclose()

    # Requests ------------------------------------------------------------------------------

    @property
    def _host(self) -> str:
        return self.base.netloc.decode("ascii")

    @property
    def _origin(self) -> str:
        return f"{self.base.scheme}://{self._host}"

    def _object_path(self, key: str) -> str:
        return f"{self.bucket_path}/{quote_key(self.prefix + _checked(key))}"

    async def _send(self, method: str, path: str, query: dict[str, str],
                    headers: dict[str, str], body: bytes | None, payload_sha256: str,
                    *, stream: bool = False) -> httpx.Response:
        signed = sign(method, self._host, path, query, headers, payload_sha256,
                      await self.credentials.current(), self.region, datetime.now(UTC))
        url = f"{self._origin}{path}" + (f"?{canonical_query(query)}" if query else "")
        request = self.client.build_request(method, url, headers={**headers, **signed},
                                            content=body)
        try:
            return await self.client.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"S3 endpoint {self._host} cannot be reached: "
                                     f"{type(exc).__name__}: {exc}") from exc

    async def _expect(self, response: httpx.Response, status: int, operation: str) -> None:
        if response.status_code == status:
            return
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        code = _error_code(body) or "no error code"
        raise StorageUnavailable(f"S3 {operation} in bucket {self.bucket}: HTTP "
                                 f"{response.status_code} ({code})")

    async def _chunks(self, response: httpx.Response, key: str,
                      chunk_size: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes(chunk_size):
                yield chunk
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"GetObject {key}: the download broke off: {exc}") from exc
        finally:
            await response.aclose()

    async def _list(self, prefix: str, token: str) -> tuple[list[str], str]:
        """One page of keys under ``prefix``, and the token of the next page ("" at the end)."""
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(self.page_size)}
        if token:
            query["continuation-token"] = token
        response = await self._send("GET", self.bucket_path or "/", query, {}, None,
                                    EMPTY_SHA256)
        await self._expect(response, 200, f"ListObjectsV2 {prefix}")
        root = _xml(response.content)
        keys = [el.text or "" for el in root.iter() if _tag(el) == "Key"]
        truncated = _child_text(root, "IsTruncated") == "true"
        return keys, _child_text(root, "NextContinuationToken") if truncated else ""

    async def _delete(self, keys: list[str]) -> None:
        objects = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
        body = (f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
                f"{objects}</Delete>").encode()
        # S3 refuses a DeleteObjects request without a checksum of its body.
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        response = await self._send("POST", self.bucket_path or "/", {"delete": ""},
                                    {"content-md5": md5, "content-type": "application/xml"},
                                    body, hashlib.sha256(body).hexdigest())
        await self._expect(response, 200, f"DeleteObjects ({len(keys)} keys)")
        errors = [el for el in _xml(response.content).iter() if _tag(el) == "Error"]
        if errors:
            raise StorageUnavailable(
                f"S3 DeleteObjects in bucket {self.bucket}: {len(errors)} of {len(keys)} keys "
                f"not deleted, the first {_child_text(errors[0], 'Key')!r} "
                f"({_child_text(errors[0], 'Code')})")


def bucket_origin(bucket: str, endpoint_url: str = "", region: str = "us-east-1",
                  addressing_style: Addressing = "virtual") -> str:
    """``scheme://host[:port]`` of the bucket's object URLs, presigned ones included: what a
    browser loads a result from when the API redirects to the bucket."""
    base = _bucket_base(bucket, endpoint_url, region, addressing_style)
    return f"{base.scheme}://{base.netloc.decode('ascii')}"


def _bucket_base(bucket: str, endpoint_url: str, region: str,
                 addressing_style: Addressing) -> httpx.URL:
    endpoint = httpx.URL(endpoint_url or f"https://s3.{region}.amazonaws.com")
    if addressing_style == "virtual":
        return endpoint.copy_with(host=f"{bucket}.{endpoint.host}", path="/")
    return endpoint.copy_with(path="/")


def _checked(key: str) -> str:
    """``key``, refused (ValueError) when it could leave the prefix once a server or proxy
    normalises the URL path."""
    if key.startswith("/") or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"blob key {key!r} escapes the storage prefix")
    return key


def _xml(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise StorageUnavailable(f"S3 answered with XML that does not parse: {exc}") from exc


def _tag(element: ElementTree.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]  # S3's namespace, where the server sends one


def _child_text(element: ElementTree.Element, name: str) -> str:
    found = next((el for el in element if _tag(el) == name), None)
    return (found.text or "") if found is not None else ""


def _error_code(body: bytes) -> str:
    """The ``Code`` of an S3 error document; "" when the body is not one."""
    try:
        return _child_text(ElementTree.fromstring(body), "Code")
    except ElementTree.ParseError:
        return ""

"""AWS Signature Version 4 for S3 requests, as pure functions over strings: the signed headers
of a request (``sign``) and the query of a presigned URL (``presign``). No HTTP here; the S3
blob store sends what these return. Checked against the worked examples of Amazon's S3
documentation (tests/unit/test_sigv4.py).

``path`` is always the request path exactly as sent, percent-encoded (``quote_key``), and the
query is sent exactly as ``canonical_query`` writes it, so what is signed is what goes out.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

__all__ = ["EMPTY_SHA256", "Credentials", "canonical_query", "presign", "quote_key", "sign"]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_S = 7 * 86400  # what S3 accepts for X-Amz-Expires


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def quote_key(path: str) -> str:
    """A path as S3 wants it in the canonical request and on the wire: every byte but the
    unreserved characters and ``/`` percent-encoded (UTF-8)."""
    return quote(path, safe="/~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The query string, sorted by name, names and values fully percent-encoded (``/`` too)."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}"
                    for k, v in sorted(params.items()))


def sign(method: str, host: str, path: str, query: Mapping[str, str],
         headers: Mapping[str, str], payload_sha256: str, credentials: Credentials,
         region: str, now: datetime) -> dict[str, str]:
    """The headers to send with the request besides ``headers``: ``x-amz-date``,
    ``x-amz-content-sha256``, ``x-amz-security-token`` (temporary credentials) and
    ``authorization``. ``host`` is the Host header as sent (with a port that is not the
    scheme's default); ``headers`` (any case) are signed as they are sent; ``now`` is UTC."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    signed = {"host": host, **{k.lower(): v for k, v in headers.items()}, **added}
    names = ";".join(sorted(signed))
    request = _canonical_request(method, path, canonical_query(query), signed, payload_sha256)
    scope = _scope(now, region)
    signature = _signature(credentials, now, region, stamp, scope, request)
    added["authorization"] = (f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
                              f"SignedHeaders={names}, Signature={signature}")
    return added


def presign(method: str, host: str, path: str, credentials: Credentials, region: str,
            now: datetime, expires_s: int) -> str:
    """The query string of a URL that lets anyone send ``method`` to ``path`` for
    ``expires_s`` seconds from ``now`` (1 to 7 days' worth, as S3 allows)."""
    if not 1 <= expires_s <= MAX_PRESIGN_S:
        raise ValueError(f"a presigned URL lives 1 to {MAX_PRESIGN_S} s, not {expires_s}")
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = _scope(now, region)
    query = {"X-Amz-Algorithm": ALGORITHM,
             "X-Amz-Credential": f"{credentials.access_key_id}/{scope}",
             "X-Amz-Date": stamp, "X-Amz-Expires": str(expires_s),
             "X-Amz-SignedHeaders": "host"}
    if credentials.session_token:
        query["X-Amz-Security-Token"] = credentials.session_token
    request = _canonical_request(method, path, canonical_query(query), {"host": host},
                                 UNSIGNED_PAYLOAD)
    signature = _signature(credentials, now, region, stamp, scope, request)
    return f"{canonical_query(query)}&X-Amz-Signature={signature}"


def _scope(now: datetime, region: str) -> str:
    return f"{now.strftime('%Y%m%d')}/{region}/s3/aws4_request"


def _canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                       payload_sha256: str) -> str:
    lines = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(headers))
    return "\n".join([method, path, query, lines, ";".join(sorted(headers)), payload_sha256])


def _signature(credentials: Credentials, now: datetime, region: str, stamp: str, scope: str,
               canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"
    key = _hmac(f"AWS4{credentials.secret_access_key}".encode(), now.strftime("%Y%m%d"))
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
